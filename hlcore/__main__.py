from hlcore.cli import main

main()
