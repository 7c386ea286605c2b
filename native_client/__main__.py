import sys

from native_client.cli import main

sys.exit(main())
