import sys

from analyzer.app.cli.main import main

sys.exit(main())
