"""The simulator's fault knobs for the fault suite: a seeded error share and an error window."""

from __future__ import annotations

import requests

from tests.support.sim_http import Api
from wecom_sim import Simulator

PATH = "externalcontact/get_follow_user_list"


def _codes(api: Api, n: int) -> list[int]:
    return [int(api.get(PATH)["errcode"]) for _ in range(n)]


def test_a_seeded_share_of_calls_fails_and_the_same_seed_fails_the_same_calls(
    simulator: Simulator,
) -> None:
    api = Api(simulator)
    simulator.inject_error_rate(PATH, 0.25, -1, seed=7)
    first = _codes(api, 200)
    assert set(first) == {0, -1}
    assert 20 <= first.count(-1) <= 80  # about a quarter of 200
    simulator.inject_error_rate(PATH, 0.25, -1, seed=7)
    assert _codes(api, 200) == first  # a run repeats
    simulator.inject_error_rate(PATH, 0.0)
    assert _codes(api, 20) == [0] * 20
    assert simulator.calls[(PATH, -1)] == 2 * first.count(-1)


def test_an_error_window_refuses_every_call_until_it_ends(simulator: Simulator) -> None:
    api = Api(simulator)
    simulator.inject_fault_window(PATH, 30.0)
    assert _codes(api, 5) == [45009] * 5
    simulator.advance_time(31)  # the simulated clock
    assert _codes(api, 3) == [0] * 3


def test_the_knobs_over_http_and_their_bad_input(simulator: Simulator) -> None:
    api = Api(simulator)
    base = simulator.api_base.replace("/cgi-bin/", "/control")
    answer = requests.post(
        f"{base}/error_rates", json={"api_path": PATH, "rate": 1, "errcode": 6000}, timeout=5
    )
    assert answer.status_code == 200
    assert _codes(api, 3) == [6000] * 3
    bad = requests.post(f"{base}/error_rates", json={"api_path": PATH, "rate": 2}, timeout=5)
    assert bad.status_code == 400
    assert "rate" in bad.json()["error"]
    requests.post(f"{base}/error_rates", json={"api_path": PATH, "rate": 0}, timeout=5)
    answer = requests.post(
        f"{base}/fault_windows", json={"api_path": PATH, "seconds": 60}, timeout=5
    )
    assert answer.status_code == 200
    assert _codes(api, 2) == [45009] * 2
