"""TensorBoard in a real browser: a tiny finished run's dashboards, opened in headless Chromium.

Starts `tensorboard --logdir` on a loopback port over a run that wrote every dashboard, drives
Debian's `chromium` through `chromedriver` (selenium), and checks that the Scalars, Text,
Images, Histograms and HParams dashboards show this run's tags and values, reading the text
of the page through the dashboards' shadow DOMs. Screenshots go to $KERAS_LLM_SCREENSHOT_DIR
(default: the test's temporary folder); their paths are printed (run with -s to see them).
Skips, saying why, when chromium, chromedriver or selenium is missing (`.ci/run` installs
them).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import shared_data_path, tiny_language_model_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

# All the visible text of the page, shadow roots included (TensorBoard's Polymer dashboards
# keep theirs there, where document.body.innerText does not reach).
DEEP_TEXT = """
const parts = [];
const walk = (node) => {
  if (node.nodeType === Node.TEXT_NODE) { parts.push(node.textContent); return; }
  if (node.nodeType === Node.ELEMENT_NODE && ['STYLE', 'SCRIPT'].includes(node.tagName)) return;
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.childNodes) walk(child);
};
walk(document.body);
return parts.join(' ').replace(/\\s+/g, ' ');
"""
# Natural sizes of every loaded <img>, shadow roots included.
IMAGE_SIZES = """
const sizes = [];
const walk = (node) => {
  if (node.tagName === 'IMG' && node.complete && node.naturalWidth)
    sizes.push([node.naturalWidth, node.naturalHeight]);
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.children || []) walk(child);
};
walk(document.body);
return sizes;
"""


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install -y "
                    "chromium chromium-driver; .ci/run does this)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[browser]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory):
    """(URL, model_dir, results) of TensorBoard serving one tiny finished run named "tiny"."""
    from keras_llm.training.language_model import train_language_model

    data_dir = shared_data_path("tinyshakespeare")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install -y "
                    "chromium chromium-driver; .ci/run does this)")
    logdir = tmp_path_factory.mktemp("tensorboard")
    model_dir = logdir / "tiny"
    config = tiny_language_model_config(data_dir, train_steps=6, eval_interval=3, log_interval=3,
                                        checkpoint_interval=3, sample_length=16,
                                        histogram_every=3, eval_batches=2)
    results = train_language_model(config, str(model_dir), log=lambda *a: None)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}", "--host=127.0.0.1",
         f"--port={port}", "--load_fast=false", "--reload_interval=1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def runs_loaded():
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as response:
                    return "tiny/logs/train" in json.loads(response.read())
            except OSError:
                return False

        _wait_for(runs_loaded, 120, "TensorBoard to load the run")
        yield url, model_dir, results
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_every_dashboard_shows_the_run(tensorboard, tmp_path):
    url, model_dir, results = tensorboard
    screenshots = os.environ.get("KERAS_LLM_SCREENSHOT_DIR", str(tmp_path))
    os.makedirs(screenshots, exist_ok=True)
    expected = {
        # Dashboard fragment -> strings its page must show once loaded.
        "scalars": ["tiny/logs/train", "weight_norm", "milliseconds_per_step", "tiny/logs/validation"],
        "text": ["sample_0", "config", "--learning_rate"],
        "images": ["attention/layer_0", "attention/layer_1"],
        "histograms": ["activations/block_1", "activations/logits", "gradients/gpt_language_model",
                       "position_embedding/embeddings"],
        "hparams": ["learning_rate", "num_layers", "validation.loss", "Trial ID"],
    }
    driver = _browser()
    saved = []
    try:
        for dashboard, strings in expected.items():
            # A fresh page each time: TensorBoard keeps visited dashboards in the page, so
            # changing only the #fragment would leave the previous dashboard's text there.
            driver.get("about:blank")
            driver.get(f"{url}/?darkMode=false#{dashboard}")
            text = _wait_for(
                lambda: (lambda page: page if all(s in page for s in strings) else None)(
                    driver.execute_script(DEEP_TEXT)),
                90, f"the {dashboard} dashboard to show {strings}")
            if dashboard == "images":
                # The attention maps, decoded by the browser at their written size:
                # 2 heads x (32 tokens x 4 pixels) + one 4-pixel gap, by 128 pixels.
                sizes = _wait_for(lambda: [s for s in driver.execute_script(IMAGE_SIZES)
                                           if s == [260, 128]], 60, "an attention image")
                assert sizes
            if dashboard == "hparams":
                # The session row holds this run's final validation loss (4 decimals shown).
                loss = f"{results['validation']['loss']:.4f}"[:5]
                _wait_for(lambda: loss in driver.execute_script(DEEP_TEXT), 60,
                          f"validation.loss {loss} in the HParams table")
            time.sleep(2)  # Let the charts finish drawing before the screenshot.
            path = os.path.join(screenshots, f"tensorboard_{dashboard}.png")
            driver.save_screenshot(path)
            saved.append(path)
            assert os.path.getsize(path) > 10_000, path
            assert text
    finally:
        driver.quit()
    print("\nTensorBoard screenshots:\n" + "\n".join(saved))

    # The projector and graph plugins read the run too (asked over HTTP: the projector draws
    # with WebGL, which headless Chromium may lack).
    def get(path):
        with urllib.request.urlopen(f"{url}/data/plugin/{path}", timeout=30) as response:
            return json.loads(response.read())

    assert "tiny/logs" in get("projector/runs")
    [embedding] = get("projector/info?run=tiny/logs")["embeddings"]
    assert embedding["tensorName"] == "token_embedding/.ATTRIBUTES/VARIABLE_VALUE"
    vocabulary = json.load(open(model_dir / "tokenizer" / "vocabulary.json"))
    assert embedding["tensorShape"] == [len(vocabulary), 32]
    assert embedding["metadataPath"].endswith("metadata.tsv")
    graphs = get("graphs/info")
    assert graphs["tiny/logs/train"]["tags"]["train_step"]["profile"] is False
    assert graphs["tiny/logs/train"]["tags"]["train_step"]["op_graph"] is True
