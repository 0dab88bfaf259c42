"""``raygan report``: one self-contained page per search, rendered by a real headless browser
(Debian's chromium) from the tables of the suite's real tiny searches."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from raygan import results
from raygan.cli import main
from raygan.pareto import pareto_front

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium (apt-get install chromium)"
)
CURVES = {"eagan": 2, "autogan": 1, "adversarialnas": 3}
"""Curves each method's page draws: hypervolume per stage, reward, entropy / IS / FID."""


def browse(page: str, *options: str) -> str:
    """What headless chromium prints for the page (``--dump-dom``: the DOM after its script
    ran), with no network."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=5000", *options, page]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def scored_front(df, stage=None):
    rows = df[(df["kind"] != "round") & df["status"].isin(["ok", "stopped"])]
    rows = rows if stage is None else rows[rows["stage"] == stage]
    rows = rows.dropna(subset=["is", "fid"])
    return rows, pareto_front(rows, {"is": "max", "fid": "min"})


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["eagan", "autogan", "adversarialnas"])
def test_the_page_renders_every_point_the_front_and_a_pinned_trial(
    golden_search, strategy, tmp_path, capsys
):
    out = golden_search(strategy)
    page = str(tmp_path / "report.html")
    assert main(["report", out, "--out", page]) == 0
    assert f"report: {page}" in capsys.readouterr().out
    source = Path(page).read_text()
    assert not re.search(r"""(src|href)=["']?https?://""", source)  # nothing to fetch: offline
    df = results.load(out)
    stages = [1, 2] if strategy == "eagan" else [None]
    parts = [scored_front(df, stage) for stage in stages]
    front = pd.concat([f for _, f in parts])
    pinned = front.sort_values("fid").iloc[0]
    dom = browse(f"file://{page}#trial={pinned['trial_id']}", "--dump-dom")
    assert re.search(r'<body[^>]*data-rendered="(\d+)"', dom)
    drawn = int(re.search(r'data-rendered="(\d+)"', dom).group(1))
    assert drawn == sum(len(rows) for rows, _ in parts) > 0
    assert dom.count('class="point front') == len(front)
    assert len(re.findall(r'<circle[^>]*class="point', dom)) == drawn
    assert dom.count("<figure>") == len(stages) + CURVES[strategy]
    detail = re.search(r'<aside id="detail">(.*?)</aside>', dom, re.S)
    assert detail and f"trial {pinned['trial_id']}" in detail.group(1)
    assert pinned["g_genotype"] in detail.group(1)
    if strategy != "adversarialnas":  # its epochs score a supernet: no trial checkpoint
        assert 'src="data:image/png;base64,' in detail.group(1)
    shot = tmp_path / "report.png"
    browse(f"file://{page}", f"--screenshot={shot}", "--window-size=1200,1800")
    pixels = plt.imread(str(shot))
    assert (
        pixels.shape[:2] == (1800, 1200)
        and pixels.reshape(-1, pixels.shape[-1]).std(0).max() > 0.05
    )


def test_a_folder_without_a_table_is_refused_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"raygan report: error: no trial table at {tmp_path} (no trials.parquet)"


def test_text_in_the_table_cannot_close_the_page_script(tmp_path):
    """A genotype string or setting holding ``</script>`` stays data."""
    from raygan import report

    data = {"title": "t", "meta": {}, "fronts": [], "curves": [], "cost": None,
            "settings": {"out": "</script><script>alert(1)</script>"}, "samples": {}}  # fmt: skip
    page = report.render(data)
    assert page.count("</script>") == 2 and "\\u003c/script>" in page
