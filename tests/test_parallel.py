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
