// VanillaJS в формате jFabula
var req = new XMLHttpRequest();
var args = Base64.encode(
 JSON.stringify({
    // Метод API
    method: 'send',
    
    // Аргументы метода
    // Ниже перечислены типовые для всех запросов аргументы
    // * - обязательные поля
    argument: {
        // *Логин1
        login: 'Agent',
        
        // *Логин2
        login2: 'Иванов И.И.',
        
        // *Пароль пользователя закодированный в SHA1 (формат фабулы)
        sha1: 'a9de7c...',
        
        // ... другие аргументы
        
        // Код запроса.
        // Необходим для идентификации ответа в общем потоке сообщений
        reqId: Math.random() + ''
    }
 })
);
req.open('GET', 'http://localhost:8930/api?fb64json=' + args, true);
req.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
req.send();
