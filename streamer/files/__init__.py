"""Users' recordings read from files (RR intervals, SmO2 exports), refusals naming the line."""
