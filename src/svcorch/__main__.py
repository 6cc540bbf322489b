from svcorch.cli import main

main()
