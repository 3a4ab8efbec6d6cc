"""A deck is read in place: opening costs no Python memory, and processes share its pages.

The deck is the ~318k-prefix one bench/deckgen.py builds from the phonenumbers
package (real prefixes, seeded synthetic rates).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rater.decks import Decks
from rater.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    pytest.importorskip("phonenumbers")
    from deckgen import write_deck

    root = tmp_path_factory.mktemp("big")
    deck = root / "deck.csv"
    rows = write_deck(deck)
    with Store(root / "data") as store:
        report = Decks(store).import_file(deck, "big", currency="USD")
    assert report.prefixes == rows > 300_000
    return root / "data", report.size


def run(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_opening_a_300k_deck_allocates_almost_nothing(big_data: tuple[Path, int]) -> None:
    data, size = big_data
    p = run("""
        import json, sys, tracemalloc
        from pathlib import Path
        from rater.engine import Deck
        from rater.store import Store
        store = Store(Path(sys.argv[1]), create=False)
        tracemalloc.start()
        deck = Deck(store, "big")
        current, peak = tracemalloc.get_traced_memory()
        assert deck.rate("861380013800", 1790000000, 60).cost >= 0
        print(json.dumps({"current": current, "peak": peak, "rows": deck.engine.n_rows}))
    """, str(data))
    out, _ = p.communicate(timeout=60)
    result = json.loads(out)
    assert result["rows"] > 300_000
    assert result["peak"] < 1 << 20, result        # under 1 MB for a deck of tens of MB
    assert size > 20 * (1 << 20)


TOUCH = """
    import json, sys
    from pathlib import Path
    from rater.engine import Deck
    from rater.store import Store

    def uss():
        total = 0
        for line in open("/proc/self/smaps_rollup"):
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
        return total

    store = Store(Path(sys.argv[1]), create=False)
    before = uss()
    deck = Deck(store, "big")
    deck.engine.validate()          # reads every node, row, tier and name: every page
    after = uss()
    print(json.dumps({"before": before, "after": after}), flush=True)
    sys.stdin.readline()            # hold the deck open until told to finish
"""


def test_a_second_process_shares_the_deck_pages(big_data: tuple[Path, int]) -> None:
    if not Path("/proc/self/smaps_rollup").exists():
        pytest.skip("no /proc/self/smaps_rollup to read unique memory from")
    data, size = big_data
    first = run(TOUCH, str(data))
    try:
        assert first.stdout is not None
        json.loads(first.stdout.readline())        # the first process has the deck mapped
        second = run(TOUCH, str(data))
        assert second.stdout is not None
        result = json.loads(second.stdout.readline())
        second.communicate("\n", timeout=60)
    finally:
        first.communicate("\n", timeout=60)
    added = result["after"] - result["before"]
    # The deck's pages are the page cache's, shared: the second reader adds little.
    assert added < size // 10, (added, size)
