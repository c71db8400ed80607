"""A secure Flower federation: throw-away TLS credentials, SuperNode keys, refusals.

Fast tests check the credentials (tinyproto.flower.secure) and the launcher's pieces; the slow
ones (``make test-flower``) start real SuperLinks and SuperNodes on 127.0.0.1:

- SuperNodes the SuperLink must not let in (a key it never registered, trust in another CA,
  no TLS) are refused: each exits saying why, the SuperLink logs the unknown key's activation
  as an error, and the run goes on without them (absent, a degraded run, recorded);
- an authenticated SuperNode whose uploads are malformed (a Flower mod turns its prototypes
  into NaN on the way out) is refused in every round by the ServerApp's checks, one line each;
- ``--insecure`` (plaintext) still gives the engine's numbers (TLS does: test_flower_deploy).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key

from tinyproto import Config, store
from tinyproto.config import ConfigError
from tinyproto.flower import secure, settings
from tinyproto.flower.deploy import LocalFederation, refusal, written_folder
from tinyproto.flower.worker import Worker, load_mod

RUN_TIMEOUT = 900.0


# --- credentials -------------------------------------------------------------------------------


def test_the_servers_certificate_is_signed_by_the_ca_for_the_given_hosts(tmp_path):
    paths = secure.make_tls(tmp_path / "tls", ["10.0.0.5", "server.lab"], days=7)
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    cert = x509.load_pem_x509_certificate(paths["certificate"].read_bytes())
    cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert ips == {"127.0.0.1", "10.0.0.5"}
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "server.lab"}
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
    assert 7 < days < 7.01  # 7 days, valid from 5 minutes ago
    key = load_pem_private_key(paths["key"].read_bytes(), None)
    assert key.public_key() == cert.public_key()  # the key that goes with the certificate
    for name in ("ca_key", "key"):  # private: the owner's only
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600
    assert stat.S_IMODE(paths["ca"].stat().st_mode) == 0o644


def test_node_keys_are_p384_pairs_flower_reads(tmp_path):
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes

    pairs = secure.make_node_keys(tmp_path, 3, prefix="edge")
    assert [p.name for pair in pairs for p in pair] == [
        "edge-0",
        "edge-0.pub",
        "edge-1",
        "edge-1.pub",
        "edge-2",
        "edge-2.pub",
    ]
    seen = set()
    for private, public in pairs:
        key = load_ssh_private_key(private.read_bytes(), None)  # as flower-supernode reads it
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
        assert try_load_public_key(public) == public_key_to_bytes(key.public_key())
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        seen.add(public.read_bytes())
    assert len(seen) == 3  # a key of its own per node


def test_existing_credentials_are_never_overwritten(tmp_path):
    paths = secure.make_tls(tmp_path)
    before = {k: p.read_bytes() for k, p in paths.items()}
    with pytest.raises(ConfigError, match=r"ca.crt exists already: not overwritten"):
        secure.make_tls(tmp_path)
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    secure.make_node_keys(tmp_path / "k", 2)
    with pytest.raises(ConfigError, match=r"node-0 exists already"):
        secure.make_node_keys(tmp_path / "k", 3)
    assert not (tmp_path / "k" / "node-2").exists()  # nothing written when one exists


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: secure.make_tls(d, ["bad host"]), r"invalid host='bad host'"),
        (lambda d: secure.make_tls(d, [""]), r"invalid host=''"),
        (lambda d: secure.make_tls(d, days=0), r"invalid days=0"),
        (lambda d: secure.make_tls(d, days=True), r"invalid days=True"),
        (lambda d: secure.make_node_keys(d, 0), r"invalid nodes=0"),
        (lambda d: secure.make_node_keys(d, 2, prefix="../x"), r"invalid prefix='../x'"),
    ],
)
def test_bad_credential_requests_are_one_line_errors(tmp_path, call, message):
    with pytest.raises(ConfigError, match=message):
        call(tmp_path / "creds")
    assert not (tmp_path / "creds").exists()  # checked before anything is written


def test_the_command_line_writes_credentials_and_refuses_to_overwrite(tmp_path):
    cmd = [sys.executable, "-m", "tinyproto.flower.secure"]
    ok = subprocess.run(
        [*cmd, "tls", str(tmp_path), "--host", "10.1.2.3"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and (tmp_path / "server.crt").exists(), ok.stderr
    again = subprocess.run([*cmd, "tls", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "exists already" in again.stderr


# --- launcher pieces ---------------------------------------------------------------------------


def test_a_refused_supernodes_reason_is_one_line_from_its_log():
    log = textwrap.dedent("""\
        INFO :      Starting Flower SuperNode
        \x1b[91mERROR \x1b[0m:     Exit Code: 305
        Failed to initialize the connection to the SuperLink.
        [code: 2004] Failed to activate SuperNode.
        The SuperNode could not establish a connection to the SuperLink.
        For more information, visit: <https://flower.ai/docs/framework/ref-exit-codes/305.html>
        INFO:     Shutting down
        """)
    assert refusal(log) == "exit code 305: [code: 2004] Failed to activate SuperNode"
    assert refusal("INFO : Starting Flower SuperNode\nINFO: Shutting down\n") is None


def test_the_launcher_reads_the_run_folder_from_the_servers_last_line():
    log = "INFO :      round 2/2: acc 0.2, 1.0 s, failed -; run folder /r/a\n"
    assert written_folder(log) is None
    log += "INFO :      run written to /r-degraded/a\nINFO :      \n"
    assert written_folder(log) == Path("/r-degraded/a")


def test_impostors_and_mods_are_checked_before_anything_starts():
    with pytest.raises(ConfigError, match=r"invalid impostors entry 4: 'unknown-key'"):
        LocalFederation(4, impostors={4: "unknown-key"})
    with pytest.raises(ConfigError, match=r"invalid impostors entry 1: 'stolen'"):
        LocalFederation(4, impostors={1: "stolen"})
    with pytest.raises(ConfigError, match=r"impostors need a secure deployment"):
        LocalFederation(4, secure=False, impostors={1: "plaintext"})
    with pytest.raises(ConfigError, match=r"mods need the ClientApp worker"):
        LocalFederation(4, clientapp="per-message", mods={0: ["m:f"]})
    with pytest.raises(ConfigError, match=r"invalid serverapp='hot': one of warm, subprocess"):
        LocalFederation(4, serverapp="hot")
    assert LocalFederation(4, simulation=True).serverapp == "subprocess"  # Ray starts its own


def test_worker_mods_wrap_the_clientapp_in_order():
    calls = []

    def app(message, context):
        calls.append(("app", message))
        return message + "-reply"

    def mod(tag):
        def m(message, context, call_next):
            calls.append((tag, message))
            return call_next(message + tag, context) + tag

        return m

    worker = Worker.__new__(Worker)
    worker.mods = [mod("A"), mod("B")]  # A is the outermost
    assert worker.call(app, "m", None) == "mAB-replyBA"
    assert calls == [("A", "m"), ("B", "mA"), ("app", "mAB")]


def test_a_bad_mod_reference_names_the_problem():
    with pytest.raises(ValueError, match=r"invalid --mod 'nocolon': MODULE:NAME"):
        load_mod("nocolon")
    with pytest.raises(ValueError, match=r"invalid --mod 'json:nothing'"):
        load_mod("json:nothing")
    with pytest.raises(ValueError, match=r"not callable"):
        load_mod("json:__name__")
    assert load_mod("json:dumps") is json.dumps


# --- real deployments --------------------------------------------------------------------------

TAMPER = '''\
import numpy as np
from flwr.app import Array


def nan_uploads(message, context, call_next):
    """Every floating-point array of the node's replies turned into NaN (an upload gone bad)."""
    reply = call_next(message, context)
    if reply.has_content() and "arrays" in reply.content:
        arrays = reply.content["arrays"]
        for name in list(arrays.keys()):
            a = arrays[name].numpy()
            if a.dtype.kind == "f":
                arrays[name] = Array(np.full_like(a, np.nan))
    return reply
'''


@pytest.mark.slow
def test_unknown_untrusting_and_plaintext_nodes_are_refused_and_a_bad_upload_too(
    tmp_path, monkeypatch
):
    """Five SuperNodes: 0 honest, 1 authenticated but its uploads NaN, 2 with a key the
    SuperLink never registered, 3 trusting another CA, 4 without TLS. 2-4 never join; 1 is
    refused every round by the server's checks; the run finishes on client 0, degraded."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "tamper_mod.py").write_text(TAMPER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mods"))
    cfg = Config(algorithm="tinyproto-fp", profile="smoke", device="cpu", num_clients=5, rounds=2)
    impostors = {2: "unknown-key", 3: "untrusted-ca", 4: "plaintext"}
    with LocalFederation(5, impostors=impostors, mods={1: ["tamper_mod:nan_uploads"]}) as fed:
        assert set(fed.refused) == {2, 3, 4}  # found while the workers started
        assert "[code: 2004] Failed to activate SuperNode" in fed.refused[2]
        assert "CERTIFICATE_VERIFY_FAILED" in fed.refused[3]
        assert fed.refused[4].startswith("exit code 305: ")
        assert all("\n" not in why for why in fed.refused.values())
        for i in (0, 1):
            assert fed.procs[f"supernode-{i}"].poll() is None  # the honest keys are in
        # the SuperLink speaks TLS only: a plaintext request gets no answer
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{fed.port}/health", timeout=5)
        rc = settings.to_run_config(
            cfg, results_dir=tmp_path / "out", round_timeout=120.0, connect_timeout=10.0
        )
        run_id = fed.submit(rc)
        status = fed.wait(run_id, RUN_TIMEOUT)
        assert status["status"] == "finished:completed", fed.logs(run_id)[-3000:]
        text = "\n".join(fed.streamed[run_id])
        link = (fed.home / "superlink.log").read_text(errors="replace")
    # the SuperLink's log: one error line, for the activation of the key it does not know
    errors = [line for line in link.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "activate-node" in errors[0] and "ApiError:2004" in errors[0]
    # the server's log: one line names the nodes left out, one line per refused upload
    assert text.count("clients without a SuperNode (left out of the run): 2 3 4") == 1
    folder = written_folder(text)
    assert folder == tmp_path / "out-degraded" / cfg.run_id()
    summary = store.verify_run(folder)["summary"]
    d = summary["degraded"]
    assert d["absent"] == [2, 3, 4] and d["failed"] == [1, 2, 3, 4]
    assert d["clients_throughout"] == 1
    refused = [f for f in summary["failures"] if f["client"] == 1]
    assert [f["round"] for f in refused] == [1, 2]
    assert all(
        f["why"] == "train: refused: message from client 1: field 'protos' holds NaN or inf values"
        for f in refused
    )
    rows = json.loads((folder / "rounds.json").read_text())["metrics"]
    assert [r["clients"] for r in rows] == ["0", "0"]  # only client 0's uploads were used
    assert not (tmp_path / "out" / cfg.run_id() / "summary.json").exists()


@pytest.mark.slow
def test_an_insecure_deployment_gives_the_engines_numbers(tmp_path):
    import pandas as pd

    import tinyproto
    from tinyproto.flower import server_app

    cfg = Config(algorithm="fedproto", profile="smoke", device="cpu", rounds=2)
    with LocalFederation(4, secure=False) as fed:
        assert fed.tls == {} and not (fed.home / "tls").exists()
        rc = settings.to_run_config(cfg, results_dir=tmp_path / "flower", round_timeout=300.0)
        run_id = fed.submit(rc)
        status = fed.wait(run_id, RUN_TIMEOUT)
        assert status["status"] == "finished:completed", fed.logs(run_id)[-3000:]
    run_dir = tmp_path / "flower" / cfg.run_id()
    got = pd.DataFrame(json.loads((run_dir / server_app.EXACT).read_text())["metrics"])
    ref = tinyproto.run(cfg, root=tmp_path / "engine", progress=False).metrics
    cols = ["round", "train_loss", "upload_bytes", "download_bytes", "test_acc"]
    pd.testing.assert_frame_equal(got[cols], ref[cols], check_exact=True)
