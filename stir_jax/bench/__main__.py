"""`python -m stir_jax.bench <mode>`: see `stir_jax.bench`."""
if __name__ == "__main__":
  from stir_jax import runtime  # first: a re-execution repeats only these lines
  runtime.prepare()

  import sys  # pylint: disable=g-import-not-at-top

  from stir_jax.bench import cli  # pylint: disable=g-import-not-at-top
  sys.exit(cli.main())
