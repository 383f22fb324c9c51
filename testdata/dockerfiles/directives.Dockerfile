# syntax = docker/dockerfile:1.7
# ESCAPE = `
# check=skip=JSONArgsRecommended;error=true

# escape=\ is now just a comment
FROM mcr.microsoft.com/windows/servercore
RUN dir `
    C:\Windows
COPY C:\src\ C:\dest\
