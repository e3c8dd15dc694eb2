from hardsnap.reconcile.cli import main

main()
