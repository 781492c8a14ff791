"""When the entry points start JAX's distributed runtime (the launch itself is tested for real in
test_multiprocess.py)."""
import pytest

from stir_jax import distributed


@pytest.mark.parametrize("env, several", [
    ({}, False),
    ({"SLURM_NTASKS": "1"}, False),
    ({"SLURM_NTASKS": "4"}, True),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ({"JAX_NUM_PROCESSES": "1"}, False),
    ({"TPU_WORKER_HOSTNAMES": "t1"}, False),
    ({"TPU_WORKER_HOSTNAMES": "t1,t2"}, True),
])
def test_launches_recognised_as_several_processes(env, several):
  assert distributed._launched_as_several(env) is several  # pylint: disable=protected-access


def test_a_single_process_starts_nothing(monkeypatch):
  calls = []
  monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda **kw: calls.append(kw))
  assert distributed.initialize(env={}) is False
  assert distributed.initialize(env={"SLURM_NTASKS": "1"}) is False
  assert distributed.initialize(num_processes=1, env={}) is False
  assert calls == []


def test_arguments_win_over_the_environment(monkeypatch):
  calls = []
  monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda **kw: calls.append(kw))
  monkeypatch.setattr(distributed.jax.distributed, "is_initialized", lambda: False)
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert distributed.initialize(env=env) is True
  knobs = distributed.timeouts({})
  assert knobs == {"heartbeat_timeout_seconds": 60, "shutdown_timeout_seconds": 120}
  assert calls[-1] == {"coordinator_address": "10.0.0.1:1", "num_processes": 4, "process_id": 3,
                       **knobs}
  assert distributed.initialize("127.0.0.1:9", 2, 0, env=env) is True
  assert calls[-1] == {"coordinator_address": "127.0.0.1:9", "num_processes": 2, "process_id": 0,
                       **knobs}
  # SLURM: JAX's own auto-detection fills in what is not given
  assert distributed.initialize(env={"SLURM_NTASKS": "8"}) is True
  assert calls[-1] == {"coordinator_address": None, "num_processes": None, "process_id": None,
                       **knobs}
  with pytest.raises(ValueError, match="JAX_PROCESS_ID='x' is not an integer"):
    distributed.initialize(env={"JAX_COORDINATOR_ADDRESS": "a:1", "JAX_PROCESS_ID": "x"})


def test_timeout_knobs_from_the_environment():
  assert distributed.timeouts({"STIR_JAX_HEARTBEAT_TIMEOUT": "45",
                               "STIR_JAX_SHUTDOWN_TIMEOUT": "30"}) == {
                                   "heartbeat_timeout_seconds": 45, "shutdown_timeout_seconds": 30}
  with pytest.raises(ValueError, match="STIR_JAX_HEARTBEAT_TIMEOUT='soon' is not a number"):
    distributed.timeouts({"STIR_JAX_HEARTBEAT_TIMEOUT": "soon"})
