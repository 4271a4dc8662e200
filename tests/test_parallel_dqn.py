"""The DQN learner step, 1 device vs 4 forced host devices (see test_parallel.py), in
every arch mode and with every arch.method. One learner step per case: on these random
batches the DQN gradient norm jumps by orders of magnitude after the first step, so
later steps amplify summation-order noise; the first step is exact to float precision."""

from tests.test_parallel import check_rows, run_cases

DQN_CASES = [
    "joint:gdas:host",
    "alternating:darts:host",
    "unrolled:pc_darts:host",
    "frozen:darts:host",
]


def test_one_and_four_devices_make_the_same_dqn_step():
    check_rows(run_cases("dqn", DQN_CASES), "dqn")
