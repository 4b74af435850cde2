"""``python -m batchsep`` runs the command line."""

from batchsep.cli.main import main

main()
