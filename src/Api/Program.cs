using Telemetry.Api.Hosting;
using Telemetry.Api.Security;

var builder = WebApplication.CreateBuilder(args is [TokenCommand.Name, ..] ? [] : args);
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
