from pacebench.cli import main

main()
