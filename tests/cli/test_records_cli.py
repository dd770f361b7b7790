import ast
import csv
import gzip
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from quarry.cli import app
from quarry.formats.dispatcher import chunk_files
from tests.support import FIXTURES, free_port, json_lines, quarry_cmd, running

runner = CliRunner()
IPLOG = FIXTURES / "iplog"


def q(data: Path, *args: str, input: bytes | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, [*args, "--data", str(data)], input=input)
    return r.exit_code, r.stdout, r.stderr


def test_ingest_dispatcher_then_find(tmp_path: Path) -> None:
    code, out, _ = q(tmp_path, "ingest", "dispatcher", "iplog",
                     str(IPLOG / "stable_metaindex2.json"))
    assert code == 0 and "20,003 records from 20 source(s)" in out
    first = (IPLOG / "stable_dispatcher" / "stable_1k_0.csv").read_text().splitlines()
    ip, ts = next(csv.reader(first))
    code, out, _ = q(tmp_path, "find", "records", "iplog", "--ip", ip, "--start", ts,
                     "--end", ts, "--json")
    assert code == 0 and [orjson.loads(x) for x in out.splitlines()] == [
        {"ip": ip, "ts": float(ts)}]
    code, out, _ = q(tmp_path, "find", "member", "iplog", "-i", f"{ip},1.1.1.1", "--json")
    assert orjson.loads(out) == {ip: True, "1.1.1.1": False}
    code, out, _ = q(tmp_path, "find", "visits", "iplog", ip, "--bucket", "3600", "--json")
    assert orjson.loads(out)["count"] >= 1
    code, out, _ = q(tmp_path, "find", "ips", "iplog", "-n", "2", "--json")
    assert orjson.loads(out)["distinct"] > 1000
    code, _, err = q(tmp_path, "find", "records", "iplog", "--ip", "1.2.3")
    assert code == 2 and "not an IP address" in err
    code, _, err = q(tmp_path, "find", "records", "iplog", "--ip", ip, "-s", "5", "-e", "1")
    assert code == 2 and "inverted" in err


def test_ingest_logs_rejects_strict_stdin(tmp_path: Path) -> None:
    log = FIXTURES / "accesslogs" / "apache_logs_8890-8910"
    rej = tmp_path / "rej.txt"
    code, out, err = q(tmp_path, "ingest", "logs", "web", str(log), "--rejects", str(rej))
    assert code == 0 and "20 records" in out
    assert "skipped 1 malformed line" in err and "apache_logs_8890-8910:10:" in err
    assert rej.read_bytes() == log.read_bytes().splitlines(keepends=True)[9]
    code, _, err = q(tmp_path, "ingest", "logs", "web2", str(log), "--strict")
    assert code == 2 and ":10: malformed" in err
    data = gzip.compress((IPLOG / "1k.csv").read_bytes())
    code, out, _ = q(tmp_path, "ingest", "logs", "gz", "-", input=data)
    assert code == 0 and "1,000 records" in out
    code, out, _ = q(tmp_path, "ingest", "logs", "gz", str(IPLOG / "stable_1k.csv"), "--append")
    assert code == 0 and "2,000 in the dataset" in out


def test_one_oversized_value_rejects_its_line_not_the_ingest(tmp_path: Path) -> None:
    """A size above 2^63-1 once aborted the ingest (ArrowInvalid, exit 1) and lost the
    1,500 good lines around it."""
    good = (FIXTURES / "accesslogs" / "apache_logs_head1500").read_bytes().splitlines(True)
    bad = b'10.9.9.9 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 %d\n' % 2**63
    log = tmp_path / "access.log"
    log.write_bytes(b"".join([*good[:700], bad, *good[700:]]))
    code, out, err = q(tmp_path, "ingest", "logs", "web", str(log))
    assert code == 0 and "1,500 records" in out
    assert "skipped 1 malformed line" in err and "access.log:701:" in err
    code, _, err = q(tmp_path, "ingest", "logs", "web2", str(log), "--strict")
    assert code == 2 and ":701: malformed" in err


def test_input_that_is_all_malformed_commits_nothing(tmp_path: Path) -> None:
    """It once committed an empty version (replacing good data) and exited 0."""
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"garbage\n\nmore garbage\n")
    rej = tmp_path / "rej.txt"
    code, _, err = q(tmp_path, "ingest", "logs", "web", str(bad), "--rejects", str(rej))
    assert code == 2
    assert err.startswith("error: all 2 non-blank line(s) were malformed access-log lines "
                          f"(the first, {bad}:1: 'garbage'); nothing was committed")
    assert rej.read_bytes() == b"garbage\nmore garbage\n"
    code, out, _ = q(tmp_path, "ls", "--json")
    assert code == 0 and json_lines(out) == []
    csv_in = tmp_path / "bad.csv"
    csv_in.write_bytes(b"ip,ts\nx,1\n1.2.3.4,abc\n")  # the header is not counted
    code, _, err = q(tmp_path, "ingest", "logs", "iplog", str(csv_in), "-f", "ipts")
    assert code == 2 and "all 2 non-blank line(s) were malformed ipts lines" in err
    # Neither a replacing ingest nor an --append may hide a dataset's data behind nothing.
    code, out, _ = q(tmp_path, "ingest", "logs", "iplog", str(IPLOG / "1k.csv"))
    assert code == 0 and "1,000 records" in out
    for extra in ([], ["--append"]):
        code, _, err = q(tmp_path, "ingest", "logs", "iplog", str(csv_in), *extra)
        assert code == 2 and "nothing was committed" in err
    code, out, _ = q(tmp_path, "versions", "iplog", "--json")
    assert code == 0 and len(json_lines(out)) == 1


def test_a_truncated_gzip_names_the_file_and_exits_2(tmp_path: Path) -> None:
    """It once printed "Aborted." (click's answer to an EOFError) and exited 1."""
    whole = gzip.compress((FIXTURES / "accesslogs" / "apache_logs_head1500").read_bytes())
    cut = tmp_path / "access.log.gz"
    cut.write_bytes(whole[:len(whole) // 2])
    code, out, _ = q(tmp_path, "ingest", "logs", "web", str(IPLOG / "1k.csv"))
    assert code == 0
    code, _, err = q(tmp_path, "ingest", "logs", "web", str(cut))
    assert code == 2 and "Aborted" not in err
    assert err.startswith(f"error: {cut}: damaged or truncated gzip data (")
    assert "nothing was committed" in err
    code, _, err = q(tmp_path, "ingest", "logs", "web", "-", input=cut.read_bytes())
    assert code == 2 and err.startswith("error: <stdin>: damaged or truncated gzip data")
    code, out, _ = q(tmp_path, "versions", "web", "--json")
    assert code == 0 and len(json_lines(out)) == 1


def test_a_table_without_rows_is_refused_by_name(tmp_path: Path) -> None:
    header = tmp_path / "header.csv"
    header.write_bytes(b"a,b\n")
    code, _, err = q(tmp_path, "ingest", "table", "t", str(header))
    assert code == 2 and err.startswith(
        "error: column 'a' has no values to tell its type from (the input has 0 row(s)); "
        "give it with --type a=TYPE")


@pytest.mark.slow
def test_migrated_deployment_served_end_to_end(tmp_path: Path) -> None:
    """The original fixtures through a real server process and the original route."""
    data = tmp_path / "data"
    subprocess.run(quarry_cmd("ingest", "dispatcher", "iplog",
                              str(IPLOG / "stable_metaindex.json"), "--data", str(data)),
                   check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    files = chunk_files(IPLOG / "stable_metaindex.json")
    rows = [(ip, float(ts)) for f in files for ip, ts in csv.reader(f.read_text().splitlines())]
    ips = [rows[3][0], rows[1500][0], rows[4000][0], rows[7000][0]]
    lo, hi = sorted((rows[0][1], rows[4999][1]))
    with running(quarry_cmd("serve", "--data", str(data), "--port", str(port)),
                 f"{url}/healthz"):
        r = httpx.get(f"{url}/find/[{','.join(ips)}]/{lo}/{hi}/")
        assert r.status_code == 200
        got = ast.literal_eval(r.text)
        want = sorted([list(x) for x in rows if x[0] in ips and lo <= x[1] <= hi],
                      key=lambda x: x[1])
        assert got == want and got
        assert httpx.get(f"{url}/find/[1.2.3.400]/1/2/").status_code == 400
