"""``medzoo predict --send URL``: store the results back where the images came from.

For every study in a predict out dir this writes a DICOM Structured Report
(``out/sr/study-NNN.dcm``: highdicom ``Comprehensive3DSR``, TID 1500 measurement report with one
finding — present/absent — and its probability, the model named as the observing device, the
study's images as evidence) and stores it, with the segmentation models' DICOM SEG files from
``out/seg/``, on the PACS: STOW-RS for an ``http(s)://`` DICOMweb URL, C-STORE for
``dimse://AET@HOST:PORT``. Both objects join the source study (they repeat its Patient and
Study modules and reference its images by UID), which is their purpose; like the SEG, the SR is
the deliberate exception to "no identifiers in what medzoo writes", confined to ``out/sr/`` and
named by a counter.

Which source files make study NNN is worked out again from the DICOM folder exactly as
``predict`` grouped them (same discovery, header scan, duplicate rule and grouping; files listed
in ``rejected.csv`` dropped), and checked against ``studies.json``'s image counts.
"""

from __future__ import annotations

from pathlib import Path

from medzoo import __version__, fsio
from medzoo.errors import InputError

__all__ = ["open_target", "write_reports", "send_results", "build_report", "study_sources"]


def open_target(url: str, *, auth_file=None, insecure: bool = False, calling_aet: str = "MEDZOO",
                timeout: float = 30.0):
    """A checked client for ``url`` (credentials from the environment or ``auth_file``).

    Called before predicting so that a wrong URL or password fails in a second, not after the
    model ran. Raises :class:`medzoo.pacs.client.PacsError` (one line, exit 2).
    """
    from medzoo.pacs import client as pacs

    client = pacs.connect(url, credentials=pacs.load_credentials(auth_file), insecure=insecure,
                          calling_aet=calling_aet, timeout=timeout)
    client.check()
    return client


def study_sources(out_dir, dicom_dir) -> dict[int, list[Path]]:
    """Study counter of a predict out dir → the source files predict scored for that study."""
    from medzoo.deploy.sources import discover, group, scan_files

    out, dicom_dir = Path(out_dir), Path(dicom_dir)
    rejected = {row["path"] for row in fsio.read_csv(out / "rejected.csv")}
    files, _ = discover(dicom_dir, skip=out)
    # files predict rejected at the header scan are listed in rejected.csv too
    sources = [src for _, src, _ in scan_files(files, dicom_dir) if src is not None]
    document = fsio.read_json(out / "studies.json")
    numbered, frames = {}, {}
    for series_list in group(sources):
        used = [s for objs in series_list for s in objs if s.rel not in rejected]
        if used:
            numbered[len(numbered) + 1] = [s.path for s in used]
            frames[len(frames) + 1] = sum(s.frames for s in used)
    # an image of a fusion export is one frame of each input; frames read but not analysed count
    per_image = len(document.get("inputs") or ()) or 1
    expected = {s["study"]: s["images"] * per_image
                + sum(n["images"] for n in s.get("not_analysed") or ())
                for s in document["studies"]}
    if expected != frames:
        raise InputError(f"DICOM dir {dicom_dir}: expected the files predict scored into {out} "
                         "(same folder, unchanged). Received: different studies or image counts")
    return numbered


def build_report(source_paths, study: dict, *, model: dict, threshold: float, finding: str,
                 series_number: int = 900):
    """The SR of one study: a ``highdicom.sr.Comprehensive3DSR``.

    Parameters
    ----------
    source_paths : list of path-like
        The study's scored images (the SR's evidence; its Patient/Study modules come from them).
    study : dict
        The ``studies.json`` entry (``max_score``, ``positive``, ``images``, ``positive_images``;
        ``findings`` of multi-class / multi-label exports: one SR finding each).
    model : dict
        ``studies.json``'s ``model`` (``name``, ``version``, ``architecture``, ``task``).
    threshold : float
    finding : str
        What a positive study shows (``"lesion"`` or the positive class name).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medzoo.deploy.dicom_seg import read_source_headers
    from medzoo.deploy.findings import DISCLAIMER, model_label

    evidence = read_source_headers(source_paths)
    label = model_label(model["name"], model["version"])
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=f"medzoo {label}"[:64], manufacturer_name="medzoo",
            model_name=f"{model['architecture']}"[:64]))
    algorithm = hd.sr.AlgorithmIdentification(name=f"medzoo {model['name']}"[:64],
                                              version=str(model["version"]))
    # multi-class / multi-label exports: one group per finding, present or absent
    per_finding = study.get("findings") or [{"finding": finding, "probability": study["max_score"],
                                             "present": study["positive"]}]
    groups = []
    for item in per_finding:
        name = str(item["finding"])
        finding_type = (codes.SCT.Lesion if name.lower() == "lesion"
                        else hd.sr.CodedConcept(name[:16].upper(), "99MEDZOO", name))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(),
                                                         identifier=f"medzoo {name} finding"),
            finding_type=finding_type, algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=codes.DCM.Probability,
                                            value=round(float(item["probability"]), 6),
                                            unit=codes.UCUM.NoUnits, algorithm_id=algorithm)],
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                name=codes.DCM.Finding,
                value=codes.SCT.Present if item["present"] else codes.SCT.Absent)]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=groups)
    # The disclaimer is a TEXT item of the report tree: the SR IOD has no Image Comments, and a
    # reader that shows the report shows its content items.
    report[0].ContentSequence.append(hd.sr.TextContentItem(
        name=codes.DCM.Comment, value=f"p >= {threshold:g}: {DISCLAIMER}",
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=hd.UID(),
        series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medzoo", is_complete=True, is_final=False, is_verified=False)
    sr.SeriesDescription = f"medzoo {label} findings (research use)"[:64]
    sr.SoftwareVersions = f"medzoo {__version__}"
    return sr


def write_reports(out_dir, dicom_dir) -> list[Path]:
    """Write ``out/sr/study-NNN.dcm`` for every study of a predict out dir; returns the paths.

    An SR already there is kept, so that sending again stores the same objects (same UIDs: the
    PACS keeps one copy) instead of a second report per study.
    """
    import pydicom

    out = Path(out_dir)
    document = fsio.read_json(out / "studies.json")
    sources = study_sources(out, dicom_dir)
    written = []
    for study in document["studies"]:
        if study.get("analysed") is False:  # nothing scored: no finding to report
            continue
        path = out / "sr" / f"study-{study['study']:03d}.dcm"
        try:
            pydicom.dcmread(str(path), stop_before_pixels=True)
            written.append(path)
            continue
        except Exception:  # not there yet (or unreadable): write it
            pass
        model = document["model"]
        finding = ("lesion" if model["task"] == "segmentation" or len(model["classes"]) < 2
                   else model["classes"][1] if len(model["classes"]) == 2 else "finding")
        sr = build_report(sources[study["study"]], study, model=model,
                          threshold=float(document["threshold"]), finding=finding)
        with fsio.atomic_path(path, suffix=".dcm") as tmp:
            sr.save_as(str(tmp), enforce_file_format=True)
        written.append(path)
    return written


def send_results(client, out_dir, dicom_dir) -> dict:
    """Write the SRs, then store SEG + SR objects through ``client`` (STOW-RS or C-STORE).

    Returns
    -------
    dict
        ``sr`` and ``seg`` (objects sent) and ``sr_files`` (paths written).

    Raises
    ------
    medzoo.pacs.client.PacsError
        Server unreachable or credentials refused.
    InputError
        The server refused an object, or the DICOM folder no longer matches the out dir.
    """
    import pydicom

    from medzoo.pacs.client import InstanceFailed, TransientError

    out = Path(out_dir)
    sr_files = write_reports(out, dicom_dir)
    seg_files = sorted((out / "seg").glob("*.dcm")) if (out / "seg").is_dir() else []
    datasets = [pydicom.dcmread(str(p)) for p in seg_files + sr_files]
    try:
        client.store(datasets)
    except (TransientError, InstanceFailed) as err:
        raise InputError(f"{client.where}: storing the results failed ({err.reason}); the SR and "
                         f"SEG files are in {out}") from None
    return {"sr": len(sr_files), "seg": len(seg_files), "sr_files": [str(p) for p in sr_files]}
