"""medzoo.pacs: talk to the archive where the images live (DICOMweb and DIMSE).

:mod:`medzoo.pacs.client` holds the connections (credentials, QIDO/WADO/STOW-RS through
dicomweb-client, C-FIND/C-GET/C-STORE through pynetdicom); :mod:`medzoo.pacs.pull` copies studies
into a DICOM folder that ``medzoo data ingest`` and ``medzoo predict`` read (reached as
``medzoo.pacs.pull.pull``: a re-export would shadow the module of the same name). The
libraries (dicomweb-client, pynetdicom, requests) are imported only when a server is contacted,
so ``medzoo --help`` stays fast.
"""

from medzoo.pacs.client import (PacsError, connect, load_credentials, parse_dimse_address,
                                parse_query)

__all__ = ["PacsError", "connect", "load_credentials", "parse_dimse_address", "parse_query"]
