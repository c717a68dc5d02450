"""raorch: roll out Offer Remote Assistance to a Windows fleet, in waves, with rollback."""

__version__ = "0.1.0"
