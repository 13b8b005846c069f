using Telemetry.Api.Hosting;
using Telemetry.Api.Security;

// appsettings.json is read from beside the server's assembly (src/Api's, copied there at build), wherever the server
// is started from (`dotnet run` starts it in the folder it was run from, so that ./data is there), unless a content
// root is given; then from the working directory, whose file wins where both are. The files are read once: watching
// them for changes would watch their folder and all below it.
string[] hostArgs = ["--hostBuilder:reloadConfigOnChange=false", .. args is [TokenCommand.Name, ..] ? [] : args];
var contentRootGiven = Environment.GetEnvironmentVariable("ASPNETCORE_CONTENTROOT") is { Length: > 0 }
    || hostArgs.Any(arg => arg.StartsWith("--contentRoot", StringComparison.OrdinalIgnoreCase));
var builder = WebApplication.CreateBuilder(new WebApplicationOptions
{
    Args = hostArgs,
    ContentRootPath = contentRootGiven ? null : AppContext.BaseDirectory,
});
ConfigurationFiles.AddWorkingDirectorySettings(builder.Configuration, builder.Environment.ContentRootPath);
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
