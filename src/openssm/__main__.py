from openssm.cli import main

main()
