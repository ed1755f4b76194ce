"""The words generated rows are made of: names, places, publishers'
bodies, subjects, formats, tags."""
from __future__ import annotations

from .known import KNOWN, THEME_SLUGS

FIRST = ("Alice", "Bob", "Carol", "David", "Emma", "Fiona", "George", "Hannah",
          "Ian", "Julia", "Kevin", "Laura", "Mohammed", "Nina", "Oliver",
          "Priya", "Rhys", "Sarah", "Tom", "Wei", "Zoë", "Siân", "Ewan")
LAST = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans",
         "Khan", "Patel", "O'Neill", "Davies", "Thomas", "MacLeod", "Hughes",
         "Clarke", "Roberts", "Walker", "Wright", "Green", "Hall")
PLACES = ("Anytown", "Barchester", "Casterbridge", "Dunmore", "Eastwick",
           "Fairhaven", "Glenbrook", "Hartfield", "Ivybridge", "Kingsbury",
           "Lowmoor", "Midhurst", "Northam", "Oakham", "Porthaven", "Redcliff",
           "Southby", "Thornbury", "Upwood", "Westerham")
BODIES = ("Council", "District Council", "Borough Council", "NHS Trust",
           "Clinical Commissioning Group", "Police", "Fire and Rescue Service",
           "Agency", "Authority", "Commission")
DEPARTMENTS = ("Cabinet Office", "Department for Transport",
                "Department for Education", "Department of Health",
                "Home Office", "Ministry of Defence", "HM Treasury",
                "Department for Environment, Food & Rural Affairs",
                "Department for Communities and Local Government",
                "Ministry of Justice", "Department for Work and Pensions",
                "Foreign and Commonwealth Office")
CATEGORIES = ("ministerial-department", "non-ministerial-department",
               "executive-ndpb", "advisory-ndpb", "local-council", "nhs",
               "police", "charity-ngo", "public-corporation", "devolved")
SUBJECTS = ("Spend over £25,000", "Road traffic counts", "School census",
             "Air quality monitoring", "Hospital waiting times",
             "Crime statistics", "Planning applications", "Bus stops",
             "Flood risk areas", "Land registry price paid",
             "Recycling rates", "Public toilets", "Car parks",
             "Payroll costs", "Contracts register", "Grants awarded",
             "Energy consumption", "Library visits", "Food hygiene ratings",
             "Population estimates")
FORMATS = (("CSV", "text/csv"), ("XLS", "application/vnd.ms-excel"),
            ("PDF", "application/pdf"), ("HTML", "text/html"),
            ("JSON", "application/json"), ("XML", "application/xml"),
            ("WMS", None), ("ZIP", "application/zip"))
FREQUENCIES = ("annual", "quarterly", "monthly", "weekly", "daily", "never",
                "discontinued")
TAGS = ("transport", "roads", "spending", "finance", "health", "nhs",
         "education", "schools", "crime", "police", "environment", "air",
         "water", "planning", "housing", "population", "census", "energy",
         "waste", "maps", "boundaries", "employment", "benefits", "economy")
TITLES = list(THEME_SLUGS) + [KNOWN.unmapped_theme]
EDITED_EXTRAS = ("temporal_coverage-to", "metadata-date", "update_frequency")


def slug(value: str) -> str:
    out = []
    for char in value.lower():
        if char.isascii() and char.isalnum():
            out.append(char)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")
