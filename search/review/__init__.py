"""Reading a finished or running study: the review model, figures and plots,
the report, promotion and prediction, the servers, and the listings."""
