from midiformer.train.loop import main

if __name__ == "__main__":
    main()
