"""The sub-commands of ``medzoo`` (:mod:`medzoo.cli`), one module per command group.

Each module adds its commands' parsers (``add_<command>(sub)``) and runs them
(``cmd_<command>(args)`` → exit status); :mod:`medzoo.cli` puts them together and owns
:func:`medzoo.cli.main`. Like the CLI, nothing here imports TensorFlow, or anything heavy, at
module level: ``medzoo --help`` stays fast.

* :mod:`~medzoo.commands.data`: ``data`` (synth, ingest, plan, pull, info)
* :mod:`~medzoo.commands.training`: ``models``, ``train``, ``gan``
* :mod:`~medzoo.commands.export`: ``export``, ``push``
* :mod:`~medzoo.commands.evaluation`: ``evaluate``, ``cv``, ``explain``, ``report``
* :mod:`~medzoo.commands.predict`: ``predict``
* :mod:`~medzoo.commands.demo`: ``demo``
* :mod:`~medzoo.commands.arguments`: what they share (sub-parser layout, ``--segment-map``)
"""
