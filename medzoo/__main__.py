import sys

from medzoo.cli import main

sys.exit(main())
