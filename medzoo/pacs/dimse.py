"""DIMSE client: C-ECHO, C-FIND, C-GET and C-STORE through pynetdicom.

See :mod:`medzoo.pacs.client` for the rules both clients keep.
"""

from __future__ import annotations

import threading
import time

from medzoo.errors import InputError
from medzoo.pacs.client import (DEFAULT_CALLING_AET, DEFAULT_TIMEOUT, DimseAddress, InstanceFailed,
                                InstanceRef, PacsError, quiet_libraries, TransientError, _as_int)


# Storage classes offered for C-GET when C-FIND did not say which classes the instances have.
_COMMON_STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",  # CT, enhanced CT
    "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1",  # MR, enhanced MR
    "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",  # CR, DX (presentation)
    "1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.2",  # DX processing, mammo
    "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",  # US, US multi-frame
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.128",  # secondary capture, PET
    "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.66.4",  # NM, SEG
    "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34",  # comprehensive (3D) SR
)


QUICK_DROP_RETRIES = 2  # extra association attempts after a connection dropped at once
QUICK_DROP_SECONDS = 2.0


class DimseClient:
    """C-ECHO / C-FIND / C-GET / C-STORE through pynetdicom; one C-GET association per thread."""

    kind = "dimse"

    def __init__(self, address: DimseAddress, *, calling_aet: str = DEFAULT_CALLING_AET,
                 timeout: float = DEFAULT_TIMEOUT):
        if not calling_aet or len(calling_aet) > 16:
            raise InputError(f"--calling-aet must be 1 to 16 characters. Received: {calling_aet!r}")
        self.address, self.calling_aet, self.timeout = address, calling_aet, timeout
        self.where = f"DICOM node {address}"
        self.sop_classes: set[str] = set()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list = []

    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        return ae

    def _associate(self, ae, during: str, **kwargs):
        a = self.address
        for attempt in range(QUICK_DROP_RETRIES + 1):
            started = time.monotonic()
            with quiet_libraries():
                assoc = ae.associate(a.host, a.port, ae_title=a.called_aet, **kwargs)
            if assoc.is_established:
                return assoc
            if assoc.is_rejected:
                raise PacsError(f"{self.where} rejected the association for {during} (does it "
                                f"know calling AET {self.calling_aet}? see --calling-aet/"
                                f"--called-aet)")
            # a node that closes the connection at once (a busy Orthanc sometimes drops it
            # before its A-ASSOCIATE-RJ is read) is asked again; a timeout is not repeated
            if time.monotonic() - started > QUICK_DROP_SECONDS:
                break
            time.sleep(0.2 * (attempt + 1))
        raise TransientError("no association (connection refused, dropped or timed out)",
                             connection=True)

    def _run_whole(self, during: str, call):
        try:
            return call()
        except TransientError as err:
            raise PacsError(f"cannot reach {self.where} ({err.reason})") from None

    def check(self) -> None:
        """C-ECHO: raises PacsError when the node cannot be used."""
        from pynetdicom.sop_class import Verification

        def echo():
            ae = self._ae()
            ae.add_requested_context(Verification)
            assoc = self._associate(ae, "C-ECHO")
            try:
                with quiet_libraries():
                    status = assoc.send_c_echo()
            finally:
                assoc.release()
            if not status or status.Status != 0:
                raise PacsError(f"{self.where} did not answer C-ECHO with success")
        self._run_whole("C-ECHO", echo)

    def _find(self, assoc, level: str, **keys) -> list:
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

        ident = Dataset()
        ident.QueryRetrieveLevel = level
        for key, value in keys.items():
            setattr(ident, key, value)
        found = []
        with quiet_libraries():
            responses = list(assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind))
        for status, identifier in responses:
            code = getattr(status, "Status", None)
            if code is None:
                raise TransientError("C-FIND got no answer (association dropped or timed out)",
                                     connection=True)
            if code in (0xFF00, 0xFF01) and identifier is not None:
                found.append(identifier)
            elif code != 0x0000:
                raise PacsError(f"{self.where} refused C-FIND (status 0x{code:04X}); is calling "
                                f"AET {self.calling_aet} allowed to query?")
        return found

    def find_instances(self, query: dict | None = None, study_uids=()) -> list[InstanceRef]:
        """C-FIND (Study Root): studies, then their series, then their instances."""
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

        def run():
            ae = self._ae()
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = self._associate(ae, "C-FIND")
            try:
                studies = []
                for uid in (list(study_uids) or [None]):
                    keys = dict(query or {})
                    keys["StudyInstanceUID"] = uid or ""
                    found = self._find(assoc, "STUDY", **keys)
                    studies.extend(str(i.StudyInstanceUID) for i in found
                                   if i.get("StudyInstanceUID"))
                refs = []
                for study in dict.fromkeys(studies):
                    for series in self._find(assoc, "SERIES", StudyInstanceUID=study,
                                             SeriesInstanceUID="", Modality=""):
                        se = str(series.get("SeriesInstanceUID", "") or "")
                        if not se:
                            continue
                        for inst in self._find(assoc, "IMAGE", StudyInstanceUID=study,
                                               SeriesInstanceUID=se, SOPInstanceUID="",
                                               SOPClassUID="", InstanceNumber=""):
                            sop = str(inst.get("SOPInstanceUID", "") or "")
                            if sop:
                                refs.append(InstanceRef(study, se, sop,
                                                        str(inst.get("SOPClassUID", "") or ""),
                                                        _as_int(inst.get("InstanceNumber")),
                                                        str(series.get("Modality", "") or "")))
                return refs
            finally:
                with quiet_libraries():
                    assoc.release()
        refs = self._run_whole("C-FIND", run)
        self.sop_classes.update(r.sop_class for r in refs if r.sop_class)
        return refs

    def _get_association(self):
        assoc = getattr(self._local, "assoc", None)
        if assoc is not None and assoc.is_established:
            return assoc
        from pynetdicom import ALL_TRANSFER_SYNTAXES, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        classes = sorted(self.sop_classes) or list(_COMMON_STORAGE_CLASSES)
        roles = []
        for sop_class in classes[:120]:  # 128 presentation contexts at most
            ae.add_requested_context(sop_class, ALL_TRANSFER_SYNTAXES)
            roles.append(build_role(sop_class, scp_role=True))
        received: dict[str, bytes] = {}

        def on_store(event):
            received[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset()
            return 0x0000

        assoc = self._associate(ae, "C-GET", ext_neg=roles,
                                evt_handlers=[(evt.EVT_C_STORE, on_store)])
        assoc.medzoo_received = received
        assoc.medzoo_classes = set(classes[:120])
        self._local.assoc = assoc
        with self._lock:
            self._open.append(assoc)
        return assoc

    def fetch(self, ref: InstanceRef) -> bytes:
        """C-GET one instance (IMAGE level) on this thread's association → DICOM file bytes."""
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

        if ref.sop_class and ref.sop_class not in self.sop_classes:
            with self._lock:
                self.sop_classes.add(ref.sop_class)
        assoc = self._get_association()
        if ref.sop_class and ref.sop_class not in assoc.medzoo_classes:
            self._drop_association()  # this association cannot receive that class: a new one
            assoc = self._get_association()
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.StudyInstanceUID, ident.SeriesInstanceUID = ref.study_uid, ref.series_uid
        ident.SOPInstanceUID = ref.sop_uid
        assoc.medzoo_received.clear()
        last = None
        with quiet_libraries():
            for status, _ in assoc.send_c_get(ident, StudyRootQueryRetrieveInformationModelGet):
                last = getattr(status, "Status", None)
        data = assoc.medzoo_received.pop(ref.sop_uid, None)
        if last is None or not assoc.is_established:
            self._drop_association()
            raise TransientError("C-GET got no answer (association dropped or timed out)",
                                 connection=True)
        if data is None:
            if last in (0xA701, 0xA702):
                raise TransientError(f"C-GET status 0x{last:04X}")
            raise InstanceFailed(f"C-GET status 0x{last:04X}, no instance received")
        return data

    def _drop_association(self):
        assoc = getattr(self._local, "assoc", None)
        self._local.assoc = None
        if assoc is not None:
            with quiet_libraries():
                assoc.abort()

    def close(self):
        with self._lock, quiet_libraries():
            for assoc in self._open:
                if assoc.is_established:
                    assoc.release()
            self._open.clear()

    def store(self, datasets) -> None:
        """C-STORE ``datasets`` on one association."""
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        datasets = list(datasets)

        def run():
            ae = self._ae()
            for sop_class in sorted({str(d.SOPClassUID) for d in datasets}):
                syntaxes = {str(d.file_meta.TransferSyntaxUID) for d in datasets
                            if str(d.SOPClassUID) == sop_class
                            and "TransferSyntaxUID" in d.file_meta}
                ae.add_requested_context(sop_class, sorted(syntaxes | {ExplicitVRLittleEndian,
                                                                        ImplicitVRLittleEndian}))
            assoc = self._associate(ae, "C-STORE")
            try:
                for ds in datasets:
                    with quiet_libraries():
                        status = assoc.send_c_store(ds)
                    code = getattr(status, "Status", None)
                    if code is None:
                        raise TransientError("C-STORE got no answer", connection=True)
                    if code not in (0x0000, 0xB000, 0xB006, 0xB007):
                        raise InstanceFailed(f"C-STORE status 0x{code:04X}")
            finally:
                with quiet_libraries():
                    if assoc.is_established:
                        assoc.release()
        self._run_whole("C-STORE", run)
