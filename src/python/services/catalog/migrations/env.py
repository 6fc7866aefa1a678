from catalog.models import Base
from catalog.search import is_search_object
from flotilla_kit.migrations import run_env
from flotilla_streams.schema import metadata as messaging_metadata

# The search index (FTS5 tables, a GIN expression index) is made by revision 0003 and declared by no
# model: left out of the models-match comparison.
run_env(Base.metadata, messaging_metadata, include_name=lambda name, type_, _parents: not is_search_object(name, type_))
