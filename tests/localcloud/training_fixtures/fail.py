"""A script-mode job that fails the way user code does: an uncaught exception."""

if __name__ == "__main__":
    print("scones-fail starting")
    raise ValueError("the scones were burnt")
