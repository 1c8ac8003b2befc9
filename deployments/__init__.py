"""How the flows are deployed: schedules, parameters, work pools."""
