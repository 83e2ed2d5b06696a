"""``voxmetric serve``: the HTTP API (in process and through a real uvicorn server on
loopback), its errors and security, SIGKILL mid-enrolment, and the browser page in a
real headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# starlette and httpx come with the test extra (pip install -e ".[test]"): a missing one is a failure.

import warnings  # noqa: E402

with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from voxmetric import cli  # noqa: E402
from voxmetric.deploy.serve import ServeSettings, create_app, load_token  # noqa: E402
from voxmetric.deploy.serve.settings import ServeError  # noqa: E402
from voxmetric.deploy.speakerdb import SpeakerDB, SpeakerDBError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"
MODEL = "sinctdnn-aam"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def real(shared_data) -> Path:
    return shared_data / "real"


@pytest.fixture(scope="module")
def model():
    from voxmetric.inference.speaker_model import load_model

    return load_model(MODEL)


@pytest.fixture
def tmpdir_uploads(tmp_path, monkeypatch):
    """Uploads go to a folder of this test's own, checked empty afterwards."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def client(model, tmp_path, tmpdir_uploads):
    app = create_app(model, ServeSettings(token=TOKEN, db=str(tmp_path / "speakers.db"), workers=2),
                     model_label=MODEL)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    assert list(tmpdir_uploads.iterdir()) == []  # every upload deleted


def _files(**paths):
    return [(field, (Path(p).name, Path(p).read_bytes(), "application/octet-stream"))
            for field, ps in paths.items() for p in (ps if isinstance(ps, list) else [ps])]


def _slt(real, i):
    return sorted((real / "arctic-slt").glob("*.flac"))[i]


def _other(real, i=0):
    return sorted((real / "vctk-p225").glob("*.flac"))[i]


def _is_one_line_error(response):
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    assert "voxmetric-serve-" not in body["error"] and "/tmp" not in body["error"], body
    return body["error"]


# --- the API in process ---------------------------------------------------------------


def test_verify_json_is_the_cli_json(client, real, capsys):
    a, b = _slt(real, 0), _slt(real, 1)
    response = client.post("/v1/verify", files=_files(a=a, b=b), headers=AUTH)
    assert response.status_code == 200, response.text
    assert cli.main(["verify", MODEL, str(a), str(b), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    got = response.json()
    assert set(got) == set(expected)
    assert (got["enrol"], got["test"], got["model"]) == (a.name, b.name, MODEL)
    for key in ("score", "llr", "threshold", "accepted"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert got["accepted"] is True
    different = client.post("/v1/verify", files=_files(a=a, b=_other(real)), headers=AUTH).json()
    assert different["accepted"] is False and different["score"] < got["score"]


def test_tokens_401_403_and_no_token_for_reading_the_model(client, real):
    files = _files(a=_slt(real, 0), b=_slt(real, 1))
    missing = client.post("/v1/verify", files=files)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in _is_one_line_error(missing)
    wrong = client.post("/v1/verify", files=files, headers={"Authorization": "Bearer " + "x" * 27})
    assert wrong.status_code == 403 and _is_one_line_error(wrong) == "invalid token"
    assert client.post("/v1/verify", files=files, headers={"Authorization": TOKEN}).status_code == 401
    for method, url in (("post", "/v1/enroll"), ("post", "/v1/identify"), ("post", "/v1/embed"),
                        ("get", "/v1/speakers"), ("delete", "/v1/speakers/alice")):
        assert getattr(client, method)(url).status_code == 401, url
        assert getattr(client, method)(url, headers={"Authorization": "Bearer nope"}).status_code == 403, url
    info = client.get("/v1/model").json()
    assert info["name"] == MODEL and info["fingerprint"].startswith(MODEL + ":sha256:")
    assert info["threshold"] > 0 and set(info["calibration"]) == {"scale", "offset"}
    assert set(info["frontend"]) == {"vad", "window_s", "step_s", "rms_dbfs"} and info["open_verify"] is False
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "MediaRecorder" in page.text and "encodeWav" in page.text


def test_enrol_list_identify_verify_by_name_and_delete(client, real, tmp_path):
    enrolled = client.post("/v1/enroll", data={"name": "slt"}, headers=AUTH,
                           files=_files(audio=[_slt(real, 0), _slt(real, 1)]))
    assert enrolled.status_code == 200, enrolled.text
    body = enrolled.json()
    assert (body["name"], body["count"], body["sources"]) == ("slt", 2, [_slt(real, 0).name, _slt(real, 1).name])
    client.post("/v1/enroll", data={"name": "p225"}, headers=AUTH, files=_files(audio=_other(real, 0)))
    speakers = client.get("/v1/speakers", headers=AUTH).json()["speakers"]
    assert [(s["name"], s["count"]) for s in speakers] == [("p225", 1), ("slt", 2)]

    found = client.post("/v1/identify", data={"top": "2"}, headers=AUTH, files=_files(audio=_slt(real, 2))).json()
    assert [c["name"] for c in found["candidates"]] == ["slt", "p225"] and found["identified"] == "slt"
    assert found["candidates"][0]["accepted"] and not found["candidates"][1]["accepted"]
    stranger = client.post("/v1/identify", headers=AUTH, files=_files(audio=sorted((real / "ls-367").glob("*"))[0]))
    assert stranger.json()["identified"] is None  # open set: nobody enrolled is close enough

    by_name = client.post("/v1/verify", data={"name": "slt"}, headers=AUTH, files=_files(audio=_slt(real, 2)))
    assert by_name.status_code == 200 and by_name.json()["accepted"] is True
    assert by_name.json()["enrol"] == "slt (speakers.db)"
    with SpeakerDB.open(tmp_path / "speakers.db", client.app.state.service.fingerprint) as db:
        assert by_name.json()["score"] == pytest.approx(db.verify("slt", client.app.state.service.model.embed(
            str(_slt(real, 2)))), abs=1e-6)

    unknown = client.post("/v1/verify", data={"name": "bob"}, headers=AUTH, files=_files(audio=_slt(real, 2)))
    assert unknown.status_code == 404 and "'bob'" in _is_one_line_error(unknown)
    assert client.delete("/v1/speakers/slt", headers=AUTH).json() == {"removed": "slt"}
    gone = client.delete("/v1/speakers/slt", headers=AUTH)
    assert gone.status_code == 404 and "no speaker named 'slt'" in _is_one_line_error(gone)
    embedded = client.post("/v1/embed", headers=AUTH, files=_files(audio=_slt(real, 0))).json()
    assert embedded["dim"] == len(embedded["embedding"]) == 256
    assert np.linalg.norm(embedded["embedding"]) > 0


def test_upload_errors_are_one_line_and_name_the_upload(model, real, tmp_path, tmpdir_uploads):
    app = create_app(model, ServeSettings(token=TOKEN, max_upload_bytes=100_000, max_audio_s=1.0))
    small = tmp_path / "short.wav"
    import soundfile as sf

    speech, rate = sf.read(_slt(real, 0))
    sf.write(small, speech[: int(1.5 * rate)], rate)  # 1.5 s: under the byte limit, over 1 s of audio
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    big = tmp_path / "big.wav"
    sf.write(big, np.tile(speech, 3), rate)
    with TestClient(app, raise_server_exceptions=False) as client:
        def post(status, url="/v1/verify", headers=AUTH, **kwargs):
            response = client.post(url, headers=headers, **kwargs)
            assert response.status_code == status, response.text
            return _is_one_line_error(response)

        assert "upload 'a' (broken.wav): unreadable or corrupt audio" in post(400, files=_files(a=corrupt, b=small))
        assert post(415, files=_files(a=small, b=text)) == ("upload 'b' (notes.mp3): unsupported audio format; "
                                                            "send WAV, FLAC or Ogg")
        assert post(400, files=_files(a=empty, b=small)) == "upload 'a' (empty.wav): empty file (0 bytes)"
        assert "over the upload limit of 0.1 MB" in post(413, files=_files(a=big, b=small))
        assert "upload 'a' (short.wav): 1.5 s of audio, over the limit of 1 s" in post(413, files=_files(a=small, b=small))
        assert "missing upload 'b'" in post(400, files=_files(a=small))
        assert "unexpected upload field 'c'" in post(400, files=_files(a=small, b=small, c=small))
        assert "multipart/form-data" in post(415, content=b"{}", headers={**AUTH, "content-type": "application/json"})
        assert "no speaker database" in post(404, url="/v1/identify", files=_files(audio=small))
    assert list(tmpdir_uploads.iterdir()) == []


def test_open_verify_opens_only_the_verification_of_two_uploads(model, real, tmp_path):
    app = create_app(model, ServeSettings(token=TOKEN, db=str(tmp_path / "s.db"), open_verify=True))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/v1/verify", files=_files(a=_slt(real, 0), b=_slt(real, 1))).status_code == 200
        by_name = client.post("/v1/verify", data={"name": "slt"}, files=_files(audio=_slt(real, 0)))
        assert by_name.status_code == 401
        assert client.post("/v1/identify", files=_files(audio=_slt(real, 0))).status_code == 401
        assert client.post("/v1/embed", files=_files(audio=_slt(real, 0))).status_code == 401
        bad = client.post("/v1/verify", files=_files(a=_slt(real, 0), b=_slt(real, 1)),
                          headers={"Authorization": "Bearer wrong-token-wrong-token"})
        assert bad.status_code == 403  # a wrong token is refused even where none is needed


def test_settings_refuse_write_endpoints_without_a_token(tmp_path, monkeypatch):
    with pytest.raises(ServeError, match="need a bearer token"):
        ServeSettings(db=str(tmp_path / "s.db"), open_verify=True).check()
    with pytest.raises(ServeError, match="no token"):
        ServeSettings().check()
    ServeSettings(open_verify=True).check()
    monkeypatch.setenv("VOXMETRIC_TOKEN", TOKEN)
    assert load_token() == TOKEN
    path = tmp_path / "token.txt"
    path.write_text("file-token-0123456789abc\n")
    assert load_token(path) == "file-token-0123456789abc"
    path.write_text("short\n")
    with pytest.raises(ServeError, match="token.txt: the token must be at least 16 characters"):
        load_token(path)
    with pytest.raises(ServeError, match="missing.txt: cannot read the token file"):
        load_token(tmp_path / "missing.txt")
    monkeypatch.delenv("VOXMETRIC_TOKEN")
    assert load_token() is None


def test_serve_command_refuses_to_start_without_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VOXMETRIC_TOKEN", raising=False)
    assert cli.main(["serve", MODEL, "--db", str(tmp_path / "s.db"), "--port", "0"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("voxmetric: error: serve --db") and "VOXMETRIC_TOKEN" in error
    assert not (tmp_path / "s.db").exists()
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = capsys.readouterr().out
    assert "Serve a model over HTTP" in text and "example:" in text and "voxmetric serve sinctdnn-aam" in text


def test_another_applications_database_stops_the_server_before_it_starts(model, tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    connection.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SpeakerDBError, match="app.db: not a voxmetric speaker database"):
        create_app(model, ServeSettings(token=TOKEN, db=str(path)))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_busy_server_answers_503_instead_of_queueing_without_bound(model, real):
    app = create_app(model, ServeSettings(token=TOKEN, workers=1, max_queue=0))
    service = app.state.service
    release = threading.Event()
    blocker = service.executor.submit(release.wait)  # the only worker is taken
    service.active = 1
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.post("/v1/verify", headers=AUTH, files=_files(a=_slt(real, 0), b=_slt(real, 1)))
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert "server busy" in _is_one_line_error(response)
            release.set()
            blocker.result()
            service.active = 0
            assert client.post("/v1/verify", headers=AUTH,
                               files=_files(a=_slt(real, 0), b=_slt(real, 1))).status_code == 200
    finally:
        release.set()
        blocker.result()


# --- a real uvicorn server on loopback ------------------------------------------------


class Server:
    """``voxmetric serve`` in a subprocess on a free loopback port (``--port 0``)."""

    def __init__(self, tmp_path: Path, db: Path, *extra: str, tmpdir: Path | None = None):
        token_file = tmp_path / "token.txt"
        token_file.write_text(TOKEN + "\n")
        self.log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1"}
        env.pop("VOXMETRIC_TOKEN", None)
        if tmpdir is not None:
            env["TMPDIR"] = str(tmpdir)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voxmetric.cli", "serve", MODEL, "--port", "0", "--db", str(db),
             "--token-file", str(token_file), "--workers", "2", *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        deadline = time.time() + 120
        while True:
            match = re.search(r"on http://127\.0\.0\.1:(\d+)/", self.log_path.read_text())
            if match and "Application startup complete" in self.log_path.read_text():
                self.url = f"http://127.0.0.1:{match.group(1)}"
                return
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, real):
    folder = tmp_path_factory.mktemp("server")
    running = Server(folder, folder / "speakers.db", "--open-verify")
    yield running
    running.stop()


@pytest.mark.slow
def test_real_server_concurrent_requests_and_no_token_in_the_log(server, real):
    import httpx

    pairs = [(_slt(real, i), _slt(real, i + 1)) for i in range(3)] + [(_slt(real, 0), _other(real, i))
                                                                      for i in range(3)]
    results, errors = {}, []

    def call(i, a, b):
        try:
            with httpx.Client(timeout=120) as http:
                response = http.post(f"{server.url}/v1/verify", files=_files(a=a, b=b), headers=AUTH)
            results[i] = (response.status_code, response.json())
        except Exception as error:  # noqa: BLE001
            errors.append(repr(error))

    threads = [threading.Thread(target=call, args=(i, a, b)) for i, (a, b) in enumerate(pairs)]
    for t in threads:
        t.start()
    with httpx.Client(timeout=120) as http:  # enrolment and listing while verifications run
        enrolled = http.post(f"{server.url}/v1/enroll", data={"name": "slt"}, headers=AUTH,
                             files=_files(audio=[_slt(real, 5), _slt(real, 6)]))
        assert enrolled.status_code == 200 and enrolled.json()["count"] == 2
    for t in threads:
        t.join()
    assert errors == [] and sorted(results) == list(range(len(pairs)))
    assert all(status == 200 for status, _ in results.values()), results
    assert [body["accepted"] for _, body in (results[i] for i in range(6))] == [True] * 3 + [False] * 3
    with httpx.Client(timeout=60) as http:
        assert http.post(f"{server.url}/v1/verify", files=_files(a=_slt(real, 0), b=_slt(real, 1))).status_code == 200
        assert http.get(f"{server.url}/v1/speakers").status_code == 401
        assert http.get(f"{server.url}/v1/speakers", headers=AUTH).json()["speakers"][0]["name"] == "slt"
    log = server.log()
    assert "POST /v1/verify HTTP/1.1\" 200" in log and TOKEN not in log and "Traceback" not in log


@pytest.mark.slow
def test_sigkill_mid_enrolment_then_restart_the_db_holds_all_or_nothing(tmp_path, real):
    import httpx

    db = tmp_path / "speakers.db"
    recordings = [_slt(real, i % 12) for i in range(30)]  # 30 uploads: an enrolment of a few seconds
    uploads = tmp_path / "tmp"
    uploads.mkdir()
    first = Server(tmp_path, db, tmpdir=uploads)
    try:
        with httpx.Client(timeout=120) as http:
            started = time.monotonic()
            assert http.post(f"{first.url}/v1/enroll", data={"name": "before"}, headers=AUTH,
                             files=_files(audio=recordings)).status_code == 200
            duration = time.monotonic() - started
        outcome = {}

        def enrol():
            try:
                with httpx.Client(timeout=120) as http:
                    outcome["response"] = http.post(f"{first.url}/v1/enroll", data={"name": "slt"}, headers=AUTH,
                                                    files=_files(audio=recordings))
            except httpx.HTTPError as error:
                outcome["error"] = error

        thread = threading.Thread(target=enrol)
        thread.start()
        time.sleep(0.5 * duration)  # the same enrolment took `duration`: this one is half way
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        thread.join()
        assert "response" not in outcome, "the enrolment finished before the kill: nothing was tested"
    finally:
        first.stop()
    assert [p.name.split("-")[2] for p in uploads.iterdir()] == [str(first.process.pid)]  # left by SIGKILL
    second = Server(tmp_path, db, tmpdir=uploads)
    try:
        # The dead server's uploads are cleaned up by the next one.
        assert [p.name.split("-")[2] for p in uploads.iterdir()] == [str(second.process.pid)]
        with httpx.Client(timeout=60) as http:
            speakers = {s["name"]: s["count"] for s in http.get(f"{second.url}/v1/speakers", headers=AUTH).json()
                        ["speakers"]}
            assert speakers.get("before") == 12  # 30 uploads of 12 recordings: each recording once
            assert speakers.get("slt") in (None, 12)  # all of the enrolment or none of it
            again = http.post(f"{second.url}/v1/enroll", data={"name": "slt"}, headers=AUTH,
                              files=_files(audio=recordings[:2]))
            assert again.status_code == 200
    finally:
        second.stop()
    assert list(uploads.iterdir()) == []  # a clean shutdown removes its own
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = dict(connection.execute("SELECT name, count FROM speakers"))
        recorded = dict(connection.execute("SELECT speaker, COUNT(*) FROM recordings GROUP BY speaker"))
    assert counts == recorded and counts["before"] == 12 and counts["slt"] in (2, 12)  # slt had the 2 already


# --- the page in a real headless browser ----------------------------------------------


def _chrome(download_dir: Path, fake_audio: Path | None = None):
    import shutil

    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1000,900", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    if fake_audio is not None:
        options.add_argument(f"--use-file-for-fake-audio-capture={fake_audio}")
    try:
        return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    except WebDriverException as error:
        pytest.skip(f"chromium did not start under chromedriver: {str(error).splitlines()[0]}")


@pytest.mark.slow
def test_page_in_headless_chromium_verifies_uploads_and_a_microphone_recording(server, real, tmp_path):
    import soundfile as sf
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    speech, rate = sf.read(_slt(real, 3))
    microphone = tmp_path / "microphone.wav"  # what the fake microphone plays
    sf.write(microphone, speech, rate, subtype="PCM_16")
    driver = _chrome(tmp_path, microphone)
    try:
        driver.get(server.url + "/")
        WebDriverWait(driver, 30).until(lambda d: "model sinctdnn-aam" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file-a").send_keys(str(_slt(real, 0).resolve()))
        driver.find_element(By.ID, "file-b").send_keys(str(_slt(real, 1).resolve()))
        driver.find_element(By.ID, "go").click()
        decision = WebDriverWait(driver, 90).until(
            lambda d: d.find_element(By.ID, "decision").text or d.find_element(By.ID, "error").text.startswith("error"))
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.find_element(By.ID, "decision").text == "same speaker", decision
        import httpx

        api = httpx.post(f"{server.url}/v1/verify", files=_files(a=_slt(real, 0), b=_slt(real, 1)), timeout=120).json()
        assert driver.find_element(By.ID, "score").text == f"{api['score']:.4f}"
        assert driver.find_element(By.ID, "llr").text == f"{api['llr']:.3f}"
        driver.save_screenshot(str(tmp_path / "verify-uploads.png"))
        assert (tmp_path / "verify-uploads.png").stat().st_size > 1000

        # A recording from the (fake) microphone: MediaRecorder -> decoded -> 16-bit WAV in the page.
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "rec-a").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "rec-a").text == "Stop")
        time.sleep(3.0)
        driver.find_element(By.ID, "rec-a").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "status-a").text.startswith(
            ("recorded", "could not")))
        status = driver.find_element(By.ID, "status-a").text
        assert status.startswith("recorded"), status
        for other, expected in ((_slt(real, 1), "same speaker"), (_other(real, 0), "different speakers")):
            driver.find_element(By.ID, "file-b").send_keys(str(other.resolve()))
            driver.execute_script("document.getElementById('decision').textContent = ''")
            driver.find_element(By.ID, "go").click()
            WebDriverWait(driver, 90).until(lambda d: d.find_element(By.ID, "decision").text
                                            or d.find_element(By.ID, "error").text.startswith("error"))
            error = driver.find_element(By.ID, "error").text
            driver.save_screenshot(str(tmp_path / f"verify-microphone-{expected.split()[0]}.png"))
            assert error == "" and driver.find_element(By.ID, "decision").text == expected, (error, expected)
    finally:
        driver.quit()
