from setuptools import find_namespace_packages, setup

setup(
    name="ckanext-datagovuk",
    version="0.1.0",
    description="Move a whole CKAN site (the old data.gov.uk CKAN 2.2) to a new CKAN",
    long_description=open("README.rst").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    packages=find_namespace_packages(include=["ckanext.*"]),
    include_package_data=True,
    # The SQL migrations and the remote scripts live in the package, so an
    # installed copy finds them; the top-level migrations/ of the source
    # tree links to them.
    package_data={"ckanext.datagovuk": ["migrations/*.sql",
                                        "config_declaration.yaml",
                                        "transfer/*.sh"]},
    zip_safe=False,
    entry_points={
        "ckan.plugins": [
            "datagovuk = ckanext.datagovuk.plugin:DatagovukPlugin",
        ],
        "ckan.click_command": [
            "datagovuk = ckanext.datagovuk.cli:datagovuk",
        ],
        "paste.global_paster_command": [
            "datagovuk = ckanext.datagovuk.paster:DatagovukCommand",
        ],
    },
)
