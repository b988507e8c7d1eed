"""medzoo.deploy: the deployment side of the chain.

``predict`` scores new DICOM studies with an export (onnxruntime by default), ``findings``
words the results, ``dicom_seg`` writes DICOM SEG objects on the source grid and ``send`` stores
SEG and SR objects back to a PACS. ``predict`` runs, in order: ``sources`` (the folder →
studies → series), ``exported`` and ``runtimes`` (the export), ``feeds`` (a file → the raw
signature's inputs), ``scoring`` and ``collect`` (scores per series; ``fused`` for several-input
exports) and ``outputs`` (the out dir). Nothing here imports TensorFlow unless ``--runtime
savedmodel`` asks for it.
"""
