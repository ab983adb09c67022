"""``python -m emotion2vec_plus.cli ...``: the same as the ``emotion2vec-plus`` command."""

import sys

from .main import main

sys.exit(main())
