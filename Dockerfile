# Placeholder: the container image arrives with the deployment work. Its build stage will run the
# same command scripts/test runs and CI proves:
#     dotnet publish src/Sidecar -c Release -o /out
# and its final stage will be a minimal non-root image with ENTRYPOINT ["/leader-sidecar"].
# Until then, build the native binary with that command and run it directly.
