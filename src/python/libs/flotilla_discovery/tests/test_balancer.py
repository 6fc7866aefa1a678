import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla_discovery.balancer import Balancer, NoInstances
from flotilla_discovery.resolver import StaticResolver


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver_of(*names: str) -> StaticResolver:
    return StaticResolver({"catalog": [f"http://{name}:8000" for name in names]})


def named(instance) -> str:
    return instance.url.removeprefix("http://").removesuffix(":8000")


async def choose_names(balancer: Balancer, times: int, **kwargs) -> list[str]:
    return [named(await balancer.choose("catalog", **kwargs)) for _ in range(times)]


async def test_round_robin_cycles_through_the_instances_in_order():
    balancer = Balancer(resolver_of("a", "b", "c"), strategy="round_robin")

    assert await choose_names(balancer, 7) == ["a", "b", "c", "a", "b", "c", "a"]


@given(instance_count=st.integers(min_value=1, max_value=12), rounds=st.integers(min_value=1, max_value=8))
async def test_round_robin_gives_every_instance_the_same_share(instance_count, rounds):
    names = [f"i{number}" for number in range(instance_count)]
    balancer = Balancer(resolver_of(*names), strategy="round_robin")

    chosen = Counter(await choose_names(balancer, instance_count * rounds))

    assert chosen == {name: rounds for name in names}


async def test_p2c_of_two_instances_always_takes_the_less_busy_one():
    balancer = Balancer(resolver_of("a", "b"), rng=random.Random(7))
    busy = await balancer.choose("catalog")
    balancer.acquire(busy)

    chosen = await choose_names(balancer, 20)

    assert named(busy) not in chosen


async def test_p2c_never_takes_the_busiest_instance_and_favours_the_idle_one():
    balancer = Balancer(resolver_of("idle", "busy", "busiest"), rng=random.Random(42))
    instances = {named(instance): instance for instance in await balancer.resolver.instances("catalog")}
    balancer.acquire(instances["busy"])
    for _ in range(2):
        balancer.acquire(instances["busiest"])

    chosen = Counter(await choose_names(balancer, 300))

    # Every pair holding "busiest" has a less busy member; "idle" wins both pairs it is in.
    assert chosen["busiest"] == 0
    assert chosen["idle"] > chosen["busy"]


async def test_in_flight_counts_acquires_minus_releases():
    balancer = Balancer(resolver_of("a"))
    instance = await balancer.choose("catalog")
    balancer.acquire(instance)
    balancer.acquire(instance)
    balancer.release(instance)

    assert balancer.in_flight(instance) == 1
    balancer.release(instance)
    balancer.release(instance)  # unmatched: forgiven, never negative
    assert balancer.in_flight(instance) == 0


async def test_same_seed_same_choices():
    first = Balancer(resolver_of("a", "b", "c", "d"), rng=random.Random(3))
    second = Balancer(resolver_of("a", "b", "c", "d"), rng=random.Random(3))

    assert await choose_names(first, 30) == await choose_names(second, 30)


@pytest.mark.parametrize("strategy", ["round_robin", "p2c"])
async def test_an_instance_is_ejected_after_consecutive_failures_and_returns_after_the_ejection(strategy):
    clock = FakeClock()
    balancer = Balancer(
        resolver_of("a", "b"), strategy=strategy, eject_after_failures=3, ejection_seconds=10, clock=clock
    )
    failing = next(i for i in await balancer.resolver.instances("catalog") if named(i) == "a")
    for _ in range(3):
        balancer.report_failure(failing)

    assert set(await choose_names(balancer, 20)) == {"b"}
    clock.now += 9.9
    assert set(await choose_names(balancer, 20)) == {"b"}
    clock.now += 0.1
    assert set(await choose_names(balancer, 40)) == {"a", "b"}


async def test_a_success_ends_the_failure_streak():
    balancer = Balancer(resolver_of("a", "b"), strategy="round_robin", eject_after_failures=3, clock=FakeClock())
    failing = (await balancer.resolver.instances("catalog"))[0]
    for _ in range(2):
        balancer.report_failure(failing)
    balancer.report_success(failing)
    for _ in range(2):
        balancer.report_failure(failing)

    assert set(await choose_names(balancer, 4)) == {"a", "b"}


async def test_back_from_ejection_an_instance_needs_a_full_streak_to_be_ejected_again():
    clock = FakeClock()
    balancer = Balancer(
        resolver_of("a", "b"), strategy="round_robin", eject_after_failures=2, ejection_seconds=5, clock=clock
    )
    failing = (await balancer.resolver.instances("catalog"))[0]
    balancer.report_failure(failing)
    balancer.report_failure(failing)
    balancer.report_failure(failing)  # a late failure while ejected: the same outage
    clock.now += 5

    balancer.report_failure(failing)
    assert set(await choose_names(balancer, 4)) == {"a", "b"}
    balancer.report_failure(failing)
    assert set(await choose_names(balancer, 4)) == {"b"}


async def test_when_every_instance_is_ejected_there_is_no_instance():
    balancer = Balancer(resolver_of("a", "b"), eject_after_failures=1, clock=FakeClock())
    for instance in await balancer.resolver.instances("catalog"):
        balancer.report_failure(instance)

    with pytest.raises(NoInstances) as raised:
        await balancer.choose("catalog")
    assert raised.value.service == "catalog"


@pytest.mark.parametrize("strategy", ["round_robin", "p2c"])
async def test_a_retry_excludes_the_instances_already_tried(strategy):
    balancer = Balancer(resolver_of("a", "b", "c"), strategy=strategy, rng=random.Random(1))
    first = await balancer.choose("catalog")
    second = await balancer.choose("catalog", exclude={first.instance_id})
    third = await balancer.choose("catalog", exclude=[first.instance_id, second.instance_id])

    assert len({first.instance_id, second.instance_id, third.instance_id}) == 3
    with pytest.raises(NoInstances):
        await balancer.choose("catalog", exclude={first.instance_id, second.instance_id, third.instance_id})


async def test_a_service_without_instances_has_no_instance():
    with pytest.raises(NoInstances) as raised:
        await Balancer(resolver_of("a")).choose("payments")
    assert raised.value.service == "payments"


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="least_loaded"):
        Balancer(resolver_of("a"), strategy="least_loaded")


async def instance_named(balancer: Balancer, name: str):
    return next(i for i in await balancer.resolver.instances("catalog") if named(i) == name)


async def test_a_late_answer_to_a_request_sent_before_the_ejection_does_not_end_it():
    clock = FakeClock()
    balancer = Balancer(resolver_of("a", "b"), eject_after_failures=1, ejection_seconds=10, clock=clock)
    returning = await instance_named(balancer, "a")
    sent_at = balancer.acquire(returning)
    balancer.report_failure(returning)  # another request to it failed meanwhile: ejected
    balancer.release(returning)
    assert set(await choose_names(balancer, 10)) == {"b"}

    clock.now += 1
    balancer.report_success(returning, sent_at=sent_at)  # the request sent before the ejection came back
    balancer.report_success(returning)  # and one whose sending time nobody knows

    assert set(await choose_names(balancer, 40)) == {"b"}


async def test_an_answer_to_a_request_sent_after_the_ejection_ended_clears_the_instance():
    clock = FakeClock()
    balancer = Balancer(resolver_of("dead", "back"), eject_after_failures=1, ejection_seconds=10, clock=clock)
    dead, back = await instance_named(balancer, "dead"), await instance_named(balancer, "back")
    balancer.report_failure(dead)
    clock.now += 10  # the ejection ran out; a call reaches it, and it answers: it is well
    sent_at = balancer.acquire(dead)
    balancer.release(dead)
    balancer.report_success(dead, sent_at=sent_at)

    balancer.instance_registered(back)

    assert set(await choose_names(balancer, 40)) == {"dead", "back"}


@pytest.mark.parametrize("strategy", ["round_robin", "p2c"])
async def test_a_dead_instance_whose_ejection_ran_out_is_not_chosen_over_one_that_registered(strategy):
    clock = FakeClock()
    balancer = Balancer(
        resolver_of("dead", "back"), strategy=strategy, eject_after_failures=3, ejection_seconds=10, clock=clock
    )
    dead = await instance_named(balancer, "dead")
    for _ in range(3):
        balancer.report_failure(dead)
    clock.now += 10  # still listed, no longer ejected, and never heard from since

    balancer.instance_registered(await instance_named(balancer, "back"))

    assert set(await choose_names(balancer, 20)) == {"back"}


async def test_an_ejected_instance_that_registers_again_is_chosen_at_once_and_listeners_hear_of_it():
    balancer = Balancer(resolver_of("a"), eject_after_failures=1, ejection_seconds=10, clock=FakeClock())
    heard: list[str] = []
    balancer.add_registration_listener("catalog", lambda: heard.append("catalog"))
    balancer.add_registration_listener("inventory", lambda: heard.append("inventory"))
    restarted = await instance_named(balancer, "a")
    balancer.report_failure(restarted)
    with pytest.raises(NoInstances):
        await balancer.choose("catalog")

    balancer.instance_registered(restarted)  # same service and instance id: the process restarted

    assert named(await balancer.choose("catalog")) == "a"
    assert heard == ["catalog"]


@pytest.mark.parametrize("strategy", ["round_robin", "p2c"])
async def test_an_instance_that_has_just_registered_is_preferred_to_one_on_a_failure_streak(strategy):
    balancer = Balancer(resolver_of("dead", "back", "other"), strategy=strategy, eject_after_failures=3)
    dead, back = await instance_named(balancer, "dead"), await instance_named(balancer, "back")
    for _ in range(2):
        balancer.report_failure(dead)  # still listed and not ejected: it would take calls

    balancer.instance_registered(back)
    assert set(await choose_names(balancer, 20)) == {"back", "other"}

    balancer.report_success(back)  # it answered: no reason left to prefer anyone
    assert set(await choose_names(balancer, 60)) == {"dead", "back", "other"}


async def test_the_preference_for_a_registered_instance_lasts_at_most_the_ejection_time():
    clock = FakeClock()
    balancer = Balancer(
        resolver_of("dead", "back"), strategy="round_robin", eject_after_failures=3, ejection_seconds=10, clock=clock
    )
    balancer.report_failure(await instance_named(balancer, "dead"))
    balancer.instance_registered(await instance_named(balancer, "back"))
    assert set(await choose_names(balancer, 4)) == {"back"}

    clock.now += 10  # never reported on (no call made it there): no longer "just registered"

    assert set(await choose_names(balancer, 4)) == {"dead", "back"}


async def test_a_removed_registration_listener_is_no_longer_called():
    balancer = Balancer(resolver_of("a"))
    heard: list[str] = []

    def listener() -> None:
        heard.append("catalog")

    balancer.add_registration_listener("catalog", listener)
    balancer.remove_registration_listener("catalog", listener)
    balancer.remove_registration_listener("catalog", listener)  # twice, or never added: nothing to do
    balancer.instance_registered(await instance_named(balancer, "a"))

    assert heard == []
