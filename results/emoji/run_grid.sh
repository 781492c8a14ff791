#!/usr/bin/env bash
# The reproduction grid on STIR-emoji (issue 14): the paper's protocol (configs/paper.py: Adam 1e-3,
# batch 16, up to 200 epochs, patience 10, best-validation parameters tested), 3 seeds per cell,
# cheapest cells first. Every line skips finished runs and resumes interrupted ones, so rerunning
# this script continues the grid; results/emoji keeps each run's small files (checkpoints and
# TensorBoard events are git-ignored); --evaluate adds eval.py's per-run outputs (pool index
# correlations, equivariance). Afterwards:
#   python eval.py --runs=results/emoji --out=results/emoji/report
# Extra arguments go to every sweep (e.g. --shard 0/2 to split the grid over two machines). On
# one machine, start this script once per core instead, without --shard: a worker skips the
# runs another is training (their directories are locked) and takes the next.
set -eu
cd "$(dirname "$0")/../.."
# tcmalloc where it is installed (Debian: apt-get install libtcmalloc-minimal4): the same results
# bit for bit, and a shorter epoch on 2 cores (energy_pool: glibc malloc spent a quarter of the
# time in the kernel; README, "Cost")
tcmalloc=$(ldconfig -p 2>/dev/null | awk '/libtcmalloc_minimal\.so\.4 /{print $NF; exit}')
if [ -z "${LD_PRELOAD:-}" ] && [ -n "$tcmalloc" ]; then export LD_PRELOAD=$tcmalloc; fi
OUT=results/emoji
sweep() {
  python -m stir_jax.sweep --out "$OUT" --datasets data/emoji.npz --seeds 1-3 \
      --config configs/paper.py --no-report --evaluate "$@"
}
# block 1: Mid2Rest; block 2: Small2Large and Large2Small for standard and pixel_pool. The peer
# families of issue 13 (dss, gauss_der, sevf, ss) on Mid2Rest come once pixel_pool's Mid2Rest cell
# is done (they complete issue 13's table, about 5 CPU-hours), then the rest of blocks 1-2 (about 7)
sweep --models standard --scenarios 2 "$@"
sweep --models standard --scenarios 1,3 "$@"
sweep --models hermite,disco,ensemble,spatial_transform --scenarios 2 "$@"
sweep --models pixel_pool --scenarios 2 "$@"
# What the training order changes: the authors' fixed order (configs/paper_order.py) with the same
# seeds, hence the same initial parameters, as the reshuffled runs (results/emoji_order);
# standard now (minutes a run), pixel_pool after block 2
order() {
  python -m stir_jax.sweep --out results/emoji_order --datasets data/emoji.npz \
      --config configs/paper_order.py --no-report --evaluate "$@"
}
order --models standard --scenarios 2 --seeds 1-3 "$@"
# issue 13: the field's other families on Mid2Rest, next to pixel_pool, hermite and disco.
# gauss_der at 1e-2, the paper's other rate: at 1e-3 it barely learns (BN-free, see the docstring of
# stir_jax/models/gaussian_derivative.py); its 1e-3 cell follows blocks 1-2
sweep --models dss --scenarios 2 "$@"
sweep --models gauss_der --scenarios 2 --lrs 1e-2 "$@"
sweep --models sevf,ss --scenarios 2 "$@"
sweep --models slice_pool,energy_pool --scenarios 2 "$@"
# standard on All2All here (minutes a run): besides its cell, it times standard on the machine
# that trains the rest, which the report's relative epoch times need (they compare runs made on
# the same machine only)
sweep --models standard --scenarios 4 "$@"
sweep --models pixel_pool --scenarios 1,3 "$@"
# then, as time allows and in the issue's order: xu and kanazawa on Mid2Rest, All2All for
# pixel_pool, conv3d
sweep --models xu,kanazawa --scenarios 2 "$@"
# All2All at the learning rate of the paper's table for each model (its run table: standard 1e-3,
# pixel_pool 1e-2; the paper's 67.3 +- 45.0 for pixel_pool is at 1e-2)
sweep --models pixel_pool --scenarios 4 --lrs 1e-2 "$@"
# issue 30: the rest of the paper's emoji table (27 cells, 1e-3 each, the learning rate of the
# paper's run table), cheapest first; conv3d (about 150 s an epoch on 2 cores) last
sweep --models ensemble,spatial_transform --scenarios 1,3,4 "$@"
sweep --models hermite --scenarios 1,3,4 "$@"
# the rest by their Mid2Rest minutes per run (report/cost.md), an All2All epoch taking about 3x a
# Small2Large one: kanazawa 11, slice_pool 14, xu 20, disco 35, energy_pool 60+, conv3d 110+;
# so the most cells finish per hour, and conv3d's Mid2Rest cell (in the done-when) before the
# costliest All2All cells
sweep --models kanazawa,slice_pool,xu --scenarios 1,3 "$@"
# slice_pool Large2Small, the cell furthest from the paper's (z about -2): the same seeds under the
# authors' training order, to measure what the order moves there (results/README.md)
order --models slice_pool --scenarios 3 --seeds 1-3 "$@"
# the rest in order of core-hours per cell still to run on one pinned core under tcmalloc (median
# epochs of report/cost.md; All2All about 3x Small2Large; slice and energy pooling after c1fb885,
# docs/performance.md; energy_pool's Mid2Rest epoch took 15 s on one core after it): disco about
# 0.8 for Small2Large or Large2Small and 1.8 for All2All, energy_pool 0.8 and 2.3, kanazawa All2All
# 3.5 (one run in progress), slice_pool All2All 4.5, xu All2All 5, conv3d Mid2Rest 6 (two runs);
# conv3d's other scenarios (not in issue 30's done-when) last
sweep --models kanazawa --scenarios 4 "$@"
sweep --models disco --scenarios 1,3,4 "$@"
sweep --models energy_pool --scenarios 1,3,4 "$@"
# xu before slice_pool since 35044f0 (xu's columns over their kernels' support: its step about
# 1.7x faster, docs/performance.md), about 3 core-hours for its All2All cell against 4.5
sweep --models xu --scenarios 4 "$@"
sweep --models slice_pool --scenarios 4 "$@"
sweep --models conv3d --scenarios 2 "$@"
sweep --models conv3d --scenarios 1,3,4 "$@"
# last, beyond the issues: pixel_pool under the authors' training order (its reshuffled Mid2Rest
# cell is within the paper's spread, so nothing waits on it) and gauss_der at 1e-3
order --models pixel_pool --scenarios 2 --seeds 1-3 "$@"
sweep --models gauss_der --scenarios 2 "$@"
