from trader.cli import main

raise SystemExit(main())
