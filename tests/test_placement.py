"""Where the engine's processes run by default, and how long they spin before sleeping."""
from shmengine.config import Config, batch_scheduled, place, shares_cpu, spin_budget


def test_one_cpu_each_while_there_are_enough():
    assert place([0, 1, 2, 3], 2) == [0, 1, 2, 3]
    assert place([4, 5, 6, 7, 8], 1) == [4, 5, 6]


def test_short_of_cpus_no_process_shares_with_one_it_wakes():
    for cpus, workers in (([0, 1], 1), ([0, 1], 2), ([0, 1], 3), ([0, 1, 2], 2),
                          ([0, 1, 2], 5), ([3, 7], 4)):
        plan = place(cpus, workers)
        feed, ws, agg = plan[0], plan[1:-1], plan[-1]
        assert len(plan) == workers + 2 and set(plan) <= set(cpus)
        assert feed not in ws and agg not in ws, (cpus, workers, plan)
        counts = [ws.count(c) for c in cpus[1:]]
        assert max(counts) - min(counts) <= 1, "workers spread evenly"
    assert place([0], 3) == [0] * 5


def test_spin_budget_defaults_and_explicit_values():
    cfg = Config()
    assert spin_budget(cfg, shared=False) == (2000, 100)
    assert spin_budget(cfg, shared=True) == (0, 0)
    cfg.wait = "spin"
    assert spin_budget(cfg, shared=True)[0] == 2000  # spin means spin
    cfg = Config(spins=10, yields=3)
    assert spin_budget(cfg, shared=True) == (10, 3)
    plan = place([0, 1], 2)
    assert [shares_cpu(plan, p) for p in range(4)] == [True] * 4
    assert not any(shares_cpu(place([0, 1, 2], 1), p) for p in range(3))


def test_the_aggregator_yields_to_a_flat_out_feed_on_its_cpu():
    agg = 2  # feed, one worker, aggregator
    shared, apart = place([0, 1], 1), place([0, 1, 2], 1)
    assert batch_scheduled(Config(), shared, agg)
    assert not batch_scheduled(Config(), apart, agg)  # a CPU of its own: nobody to yield to
    assert not batch_scheduled(Config(), shared, 0) and not batch_scheduled(Config(), shared, 1)
    assert not batch_scheduled(Config(rate=1e6), shared, agg)  # paced: wake-ups served at once
    assert batch_scheduled(Config(source="itch:day.itch"), shared, agg)
    assert not batch_scheduled(Config(source="itch:day.itch", speed=10), shared, agg)
    assert not batch_scheduled(Config(source="udp://239.1.1.1:5000"), shared, agg)
