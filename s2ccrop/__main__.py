"""`python -m s2ccrop`: the same command line as the `s2ccrop` script."""

from .cli import run

if __name__ == "__main__":
    run()
