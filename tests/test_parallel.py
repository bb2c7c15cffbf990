import random
import time
from concurrent.futures import ThreadPoolExecutor

from asrforge.parallel import ordered_map


def test_ordered_map_keeps_order_and_takes_only_a_window_of_items_ahead():
    taken = []

    def items():
        for i in range(200):
            taken.append(i)
            yield i

    def slow_square(i):
        time.sleep(random.random() * 0.002)    # finish out of order
        return i * i

    seen_ahead = []
    with ThreadPoolExecutor(4) as pool:
        results = []
        for r in ordered_map(pool, slow_square, items(), ahead=8):
            seen_ahead.append(len(taken) - len(results))     # items submitted but not yet handed back
            results.append(r)
    assert results == [i * i for i in range(200)]
    assert max(seen_ahead) <= 8        # Executor.map would have taken all 200 before the first result


def test_ordered_map_stopped_early_runs_nothing_more():
    ran = []

    def record(i):
        time.sleep(0.01)
        ran.append(i)
        return i

    with ThreadPoolExecutor(1) as pool:
        results = ordered_map(pool, record, range(100), ahead=20)
        assert next(results) == 0
        results.close()            # what a KeyboardInterrupt in the consumer does to the generator
    assert len(ran) <= 3           # the one running when it stopped finishes; the other queued ones do not start
