import sys
from pathlib import Path

# The fakes module sits next to the tests (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).parent))
