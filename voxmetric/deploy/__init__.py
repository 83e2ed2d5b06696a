"""Deployment: the speaker database (:mod:`.speakerdb`), enrolment and identification
(:mod:`.enroll`) and calibration on a user's own pairs (:mod:`.calibrate`)."""
