"""The test harness's own rule for starting servers again: only when BentoML lost
the race for a port it reserved itself, never when the serving port is taken."""

from tests.support.server import lost_port_race

# The line a server printed when it lost the race (from a CI run's log).
LOST_RACE = "zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:39425')"
# What BentoML prints when the serving port chosen by the test is taken.
SERVING_PORT_TAKEN = (
    "Error: [Errno 98] error while attempting to bind on address ('127.0.0.1', 3000): "
    "address already in use"
)


def test_a_lost_supervisor_port_race_is_recognised():
    assert lost_port_race(f"Traceback (most recent call last):\n  ...\n{LOST_RACE}\n")


def test_a_taken_serving_port_or_a_crash_is_not_retried():
    assert not lost_port_race(SERVING_PORT_TAKEN)
    assert not lost_port_race("RuntimeError: the model store holds no loan_approval model")
