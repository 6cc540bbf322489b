from svcorch.cli_light import main

main()
