"""`python -m bifrost_cli` == `bifrost`."""

from bifrost_cli.main import main

if __name__ == "__main__":
    main()
