"""`bench malloc`: train.py's epoch times under the system malloc against tcmalloc
(`stir_jax.runtime.use_tcmalloc`). Needs the extra ``train``."""
from __future__ import annotations

import statistics

from stir_jax import runtime
from stir_jax.bench import scaling


def bench_malloc(names, dataset: str, epochs: int = 3, rounds: int = 1) -> list[dict]:
  """train.py's epoch time under the system malloc and under tcmalloc: per model, `rounds` pairs
  of runs in the order system, tcmalloc, then tcmalloc, system, and so on (a machine whose speed
  drifts favours neither); per run the median of epochs 2.. (epoch 1 compiles), per allocator the
  mean over its runs, and the malloc each run's results.json names. Without tcmalloc installed
  both are "system"."""
  base = runtime.undecided_environment(scaling.subprocess_env(1))
  envs = {"system": {**base, runtime.OPT_OUT: "0"}, "tcmalloc": base}
  print(f"train.py, emoji Mid2Rest (configs/paper.py), median of epochs 2-{epochs} per run")
  out = []
  for name in names:
    secs, ran_on = {"system": [], "tcmalloc": []}, {}
    for r in range(rounds):
      for label in (("system", "tcmalloc") if r % 2 == 0 else ("tcmalloc", "system")):
        rows, res = scaling.train_epochs(name, dataset, epochs, envs[label])
        secs[label].append(statistics.median(row["epoch_seconds"] for row in rows[1:]))
        ran_on[label] = res["host"].get("allocator")
    row = {"model": name, "system_s": statistics.mean(secs["system"]),
           "tcmalloc_s": statistics.mean(secs["tcmalloc"]), "system_runs": secs["system"],
           "tcmalloc_runs": secs["tcmalloc"], "system_ran_on": ran_on["system"],
           "tcmalloc_ran_on": ran_on["tcmalloc"]}
    row["speedup"] = row["system_s"] / row["tcmalloc_s"]
    out.append(row)
    each = lambda label: ", ".join(f"{v:.1f}" for v in secs[label])  # pylint: disable=cell-var-from-loop
    print(f"{name:<18} {row['system_ran_on']} {row['system_s']:.1f} s ({each('system')}), "
          f"{row['tcmalloc_ran_on']} {row['tcmalloc_s']:.1f} s ({each('tcmalloc')}): "
          f"{row['speedup']:.2f}x", flush=True)
  return out
