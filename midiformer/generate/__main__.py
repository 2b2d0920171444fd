from midiformer.generate.app import run

if __name__ == "__main__":
    run()
