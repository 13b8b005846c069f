using Telemetry.Api.Hosting;
using Telemetry.Api.Security;

// The configuration files are read once. Watching them for changes watches the working directory and all below it,
// the database's directory included by default, so every write to the database would wake the watcher.
var builder = WebApplication.CreateBuilder(["--hostBuilder:reloadConfigOnChange=false", .. args is [TokenCommand.Name, ..] ? [] : args]);
builder.AddTelemetryServer();

var app = builder.Build();
if (args is [TokenCommand.Name, .. var options])
{
    // Mints a development token with the server's configuration and exits; nothing is started.
    return TokenCommand.Run(app, options, Console.Out, Console.Error);
}

app.MapTelemetryServer();
app.Run();
return 0;
