@echo off
rem Starts the server on Windows (CMD): `start server.bat`, as in the original.
rem On first use it creates .venv and installs the package. Arguments go to `vwell-pbx serve`.
cd /d "%~dp0"
if not exist .venv\Scripts\vwell-pbx.exe (
    echo server.bat: first run, creating .venv and installing vwell-pbx-srv
    py -3 -m venv .venv || python -m venv .venv
    .venv\Scripts\python -m pip install --quiet --upgrade pip
    .venv\Scripts\python -m pip install --quiet -e .
)
.venv\Scripts\vwell-pbx.exe serve %*
