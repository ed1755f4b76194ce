import ckan.plugins as plugins
import ckan.plugins.toolkit as toolkit

from ckanext.datagovuk import cli


@toolkit.blanket.config_declarations
class DatagovukPlugin(plugins.SingletonPlugin):
    """Makes the ``datagovuk`` commands available through ``IClick`` when the
    plugin is enabled; the ``ckan.click_command`` entry point does the same
    when it is not."""

    plugins.implements(plugins.IClick)

    def get_commands(self):
        return [cli.datagovuk]
