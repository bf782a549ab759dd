from streamlane.cli import main

main()
