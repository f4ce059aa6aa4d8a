"""Claims registry: the transcribed files are well formed; verdicts and summary."""

import pandas as pd
import pytest

from cbirlib import claims, paths

HEADER = ",".join(claims.CLAIM_COLUMNS)


def _write(tmp_path, rows, name="p900_toy.csv"):
    lines = [HEADER] + rows
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path


def test_committed_registry_loads_and_keys_are_unique():
    reg = claims.load_claims()
    assert not reg.duplicated(["paper", "table", "row", "column"]).any()
    assert set(reg["paper"]) >= {"p002", "p003", "p004"}
    assert reg["value"].notna().all()
    assert (reg["source"].str.len() > 0).all(), "every claim names its source"


def test_registry_file_names_match_paper_ids():
    for path in sorted(paths.claims_dir().glob("p*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert set(frame["paper"]) == {path.name[:4]}, path.name


def test_bad_files_rejected_with_file_name(tmp_path):
    _write(tmp_path, ["p900,Table 1,a,b,abc,,%,d,p,s,"])
    with pytest.raises(ValueError, match="p900_toy.csv.*non-numeric"):
        claims.load_claims(directory=tmp_path)
    _write(tmp_path, ["p900,Table 1,a,b,1,,%,d,p,s,", "p900,Table 1,a,b,2,,%,d,p,s,"])
    with pytest.raises(ValueError, match="duplicate claim key"):
        claims.load_claims(directory=tmp_path)
    (tmp_path / "p900_toy.csv").write_text("paper,value\np900,1\n")
    with pytest.raises(ValueError, match="columns"):
        claims.load_claims(directory=tmp_path)


def test_tolerance_rules():
    assert claims.Tolerance(absolute=2.0).allows(96.1, 94.1)
    assert not claims.Tolerance(absolute=2.0).allows(96.1, 94.0)
    assert claims.Tolerance(relative=0.25).allows(12.3, 15.3)
    assert not claims.Tolerance(relative=0.25).allows(12.3, 15.5)
    assert claims.Tolerance().allows(45000, 45000) and not claims.Tolerance().allows(45000, 45001)
    assert claims.Tolerance().describe() == "exact"


def test_recorder_verdicts_and_summary(tmp_path):
    reg_dir = _write(tmp_path, ["p900,Table 1,A,mAP,96.1,,%,d,p,s,",
                                "p900,Table 1,A,time,12.3,,ms,d,p,s,",
                                "p900,Table 1,B,mAP,50,,%,d,p,s,",
                                "p900,Table 1,C,n,10,,count,d,p,s,"])
    reg = claims.load_claims(directory=reg_dir)
    rec = claims.ClaimsRecorder("2", claims=reg)
    assert rec.record("p900", "Table 1", "A", "mAP", 60.0)["verdict"] == "not reproduced"
    assert rec.record("p900", "Table 1", "A", "time", 14.0)["verdict"] == "reproduced"
    row = rec.record("p900", "Table 1", "B", "mAP", 42.0, not_checkable="dataset not available")
    assert row["verdict"] == "not checkable" and row["reproduced"] == 42.0
    with pytest.raises(ValueError, match="not_checkable"):
        rec.record("p900", "Table 1", "B", "mAP", None)
    with pytest.raises(KeyError, match="rows in that table"):
        rec.record("p900", "Table 1", "Z", "mAP", 1.0)
    out = rec.write(tmp_path / "res" / "02" / "claims.csv")
    written = pd.read_csv(out)
    assert list(written.columns) == claims.RESULT_COLUMNS
    assert written.loc[0, "difference"] == pytest.approx(60.0 - 96.1)
    summary, counts = claims.summarize(results=tmp_path / "res", claims=reg)
    assert counts.loc["p900", "reproduced"] == 1
    assert counts.loc["p900", "not reproduced"] == 1
    assert counts.loc["p900", "not checkable"] == 1
    assert counts.loc["p900", "pending"] == 1   # row C was never recorded
    assert (tmp_path / "res" / "claims_summary.csv").is_file()
